package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImageStarts builds the reconciler as deploy/Dockerfile does, makes
// the image of its final stage, reads the tarball back, unpacks its file
// system and runs `/reconciler version` inside it: chrooted as the image's
// user when the test runs as root (as CI does), else from the unpacked
// directory.
func TestImageStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the reconciler")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "reconciler")
	const version, commit = "v0.0.0-imagetest", "c0ffee"
	gobuild := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version="+version+" -X main.commit="+commit,
		"-o", bin, "./cmd/reconciler")
	gobuild.Dir = "../.."
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "image.tar")
	var stdout, stderr bytes.Buffer
	code := run([]string{"--dockerfile", "../Dockerfile", "--binary", bin, "--ca-certs", ca,
		"--version", version, "--commit", commit, "--tag", "reconciler:test", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("image: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "sha256:") {
		t.Errorf("image printed %q, want the digest", stdout.String())
	}

	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || !slices.Equal(c.Entrypoint, []string{"/reconciler"}) || !slices.Equal(c.Cmd, []string{"run"}) {
		t.Errorf("os %q entrypoint %q cmd %q, want linux [/reconciler] [run]", cf.OS, c.Entrypoint, c.Cmd)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if !slices.Contains(c.Env, "RECONCILER_DATA_DIR=/data") {
		t.Errorf("env %q lacks RECONCILER_DATA_DIR=/data", c.Env)
	}
	if _, ok := c.ExposedPorts["9464/tcp"]; !ok {
		t.Errorf("exposed ports %v lack 9464/tcp", c.ExposedPorts)
	}
	if c.Labels["org.opencontainers.image.version"] != version || c.Labels["org.opencontainers.image.revision"] != commit {
		t.Errorf("labels %v, want version %s and revision %s", c.Labels, version, commit)
	}

	// The file system, as a container engine unpacks it.
	root := filepath.Join(dir, "rootfs")
	headers := unpack(t, mutate.Extract(img), root)
	for p, want := range map[string]struct {
		mode     int64
		uid, gid int
	}{
		"tmp":                               {0o1777, 0, 0},
		"data":                              {0o755, 65532, 65532},
		"reconciler":                        {0o755, 0, 0},
		"etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0},
	} {
		h, ok := headers[p]
		if !ok {
			t.Errorf("the image has no %s", p)
			continue
		}
		if h.Mode != want.mode || h.Uid != want.uid || h.Gid != want.gid {
			t.Errorf("%s: mode %o uid %d gid %d, want %o %d %d", p, h.Mode, h.Uid, h.Gid, want.mode, want.uid, want.gid)
		}
	}

	cmd := exec.Command(filepath.Join(root, "reconciler"), "version")
	if os.Geteuid() == 0 {
		if err := os.Chmod(root, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("/reconciler", "version")
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		cmd.Dir = "/"
		t.Log("running /reconciler version chrooted into the image as 65532:65532")
	} else {
		t.Log("not root: running the image's /reconciler from the unpacked directory, without chroot")
	}
	cmd.Env = c.Env
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("/reconciler version in the image: %v\n%s", err, got)
	}
	if want := "reconciler " + version + " (commit " + commit; !strings.Contains(string(got), want) {
		t.Errorf("/reconciler version printed %q, want %q", got, want)
	}
}

// unpack writes the flattened file system r under root and returns the
// tar headers by name.
func unpack(t *testing.T, r io.ReadCloser, root string) map[string]*tar.Header {
	t.Helper()
	defer r.Close()
	headers := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return headers
		}
		if err != nil {
			t.Fatal(err)
		}
		headers[strings.TrimSuffix(h.Name, "/")] = h
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			t.Fatalf("the image has a path outside its root: %q", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, os.FileMode(h.Mode&0o777)|stickyIf(h.Mode)); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected entry type %c", h.Name, h.Typeflag)
		}
	}
}

func stickyIf(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// TestImageRefusesWhatItCannotReproduce: a final stage the builder does not
// follow fails with the Dockerfile's line, so the Dockerfile and the image
// CI starts cannot drift apart silently.
func TestImageRefusesWhatItCannotReproduce(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dockerfile, want string
	}{
		{"a base image", "FROM golang:1 AS build\nFROM debian:12\nCOPY --from=build /out/reconciler /reconciler\n", `Dockerfile:2: FROM: the final stage is FROM "debian:12"`},
		{"a RUN", "FROM scratch\n# a comment\nRUN echo hi\n", "Dockerfile:3: RUN: the image builder"},
		{"an unknown source", "FROM scratch\nCOPY --from=build /out/other /other\n", "Dockerfile:2: COPY: /out/other: the image builder"},
		{"a shell-form entrypoint", "FROM scratch\nENTRYPOINT /reconciler run\n", "Dockerfile:2: ENTRYPOINT: want the exec form"},
		{"a bad label", "FROM scratch\nLABEL a=\"unterminated\n", "Dockerfile:2: LABEL: unterminated quote"},
		{"a name chown", "FROM scratch\nCOPY --chown=app:app /out/data /data\n", "Dockerfile:2: COPY: --chown=app:app: want numeric"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df := filepath.Join(dir, "Dockerfile")
			if err := os.WriteFile(df, []byte(tc.dockerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := build(options{dockerfile: df, binary: bin, caCerts: bin, arch: "amd64", version: "v", commit: "c"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("build: %v, want an error containing %q", err, tc.want)
			}
		})
	}

	var stderr bytes.Buffer
	if code := run([]string{"--out", filepath.Join(dir, "x.tar")}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--binary") {
		t.Errorf("without --binary: exit %d, %q; want 2 naming --binary", code, stderr.String())
	}
}
