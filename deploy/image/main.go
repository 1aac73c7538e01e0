// Command image builds the reconciler's container image without a
// container engine, from the final stage of deploy/Dockerfile: the same
// files at the same paths, with the same owner and mode, and the same
// labels, environment, user, port, entrypoint and command. It is how CI
// checks that the image layout starts (no Docker engine runs there), and a
// way to build an image on a machine without one:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)" \
//	  -o /tmp/reconciler ./cmd/reconciler
//	go run ./deploy/image --binary /tmp/reconciler --version v1.2.3 --out reconciler.tar
//	docker load -i reconciler.tar     # or: crane push reconciler.tar REGISTRY/reconciler:v1.2.3
//
// The Dockerfile stays the way to build a release image. This command
// reads it and refuses an instruction of its final stage that it does not
// know how to reproduce, naming the line, so the two cannot drift apart
// silently.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.dockerfile, "dockerfile", "deploy/Dockerfile", "the Dockerfile whose final stage the image reproduces")
	fs.StringVar(&o.binary, "binary", "", "the reconciler binary: static (CGO_ENABLED=0), for linux/`GOARCH` (required)")
	fs.StringVar(&o.caCerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "the CA bundle copied to /etc/ssl/certs/ca-certificates.crt")
	fs.StringVar(&o.version, "version", "dev", "the VERSION build argument (the image's version label)")
	fs.StringVar(&o.commit, "commit", "unknown", "the COMMIT build argument (the image's revision label)")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "the image's architecture (the binary's GOARCH)")
	fs.StringVar(&o.tag, "tag", "reconciler:dev", "the image name and tag recorded in the tarball")
	out := fs.String("out", "reconciler.tar", "where to write the image, as a tarball `docker load` and `crane push` read")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: go run ./deploy/image --binary FILE [--version V --commit C] [--out FILE]")
		fmt.Fprintln(stderr, "Builds the reconciler image of deploy/Dockerfile's final stage without a container engine.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.binary == "" {
		fmt.Fprintln(stderr, "image: --binary is required (build it as the Dockerfile does: CGO_ENABLED=0 go build -trimpath ./cmd/reconciler)")
		return 2
	}
	img, err := build(o)
	if err != nil {
		fmt.Fprintln(stderr, "image:", err)
		return 1
	}
	digest, err := writeTarball(img, o.tag, *out)
	if err != nil {
		fmt.Fprintln(stderr, "image:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", *out, o.tag, digest)
	return 0
}
