package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// options are the inputs of one build.
type options struct {
	dockerfile string // the Dockerfile whose final stage is reproduced
	binary     string // the reconciler binary
	caCerts    string // the CA bundle
	version    string // the VERSION build argument
	commit     string // the COMMIT build argument
	arch       string // the image's architecture
	tag        string // the name recorded in the tarball
}

// defaultPath is the PATH Docker gives an image built FROM scratch.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // the line it starts on
	cmd  string // upper case: FROM, COPY, ...
	args string // the rest, trimmed
}

func (in instruction) errorf(file, format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s: %s", file, in.line, in.cmd, fmt.Sprintf(format, a...))
}

// parseDockerfile splits a Dockerfile into instructions.
func parseDockerfile(r io.Reader) ([]instruction, error) {
	var out []instruction
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var cur *instruction
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur == nil && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		cont := strings.HasSuffix(line, `\`)
		line = strings.TrimSuffix(line, `\`)
		if cur == nil {
			cmd, rest, _ := strings.Cut(line, " ")
			cur = &instruction{line: n, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest)}
		} else {
			cur.args = strings.TrimSpace(cur.args + " " + strings.TrimSpace(line))
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, nil
}

// source is what the build stage puts at a path the final stage copies.
type source struct {
	file string      // a file on this machine; "" = a directory
	mode os.FileMode // the mode the build stage gives it
}

// sources maps the build stage's paths to this machine's files. A COPY of
// any other path is refused, so a change to the Dockerfile that this
// builder does not follow fails the image test.
func (o options) sources() map[string]source {
	return map[string]source{
		"/etc/ssl/certs/ca-certificates.crt": {file: o.caCerts, mode: 0o644},
		"/out/tmp":                           {mode: os.ModeDir | os.ModeSticky | 0o777}, // mkdir -p -m 1777
		"/out/data":                          {mode: os.ModeDir | 0o755},
		"/out/reconciler":                    {file: o.binary, mode: 0o755},
	}
}

// build makes the image of the Dockerfile's final stage: one layer per
// COPY, and its configuration.
func build(o options) (v1.Image, error) {
	f, err := os.Open(o.dockerfile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ins, err := parseDockerfile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.dockerfile, err)
	}
	last := -1
	for i, in := range ins {
		if in.cmd == "FROM" {
			last = i
		}
	}
	if last < 0 {
		return nil, fmt.Errorf("%s: no FROM", o.dockerfile)
	}
	if base := strings.Fields(ins[last].args); len(base) == 0 || base[0] != "scratch" {
		return nil, ins[last].errorf(o.dockerfile, "the final stage is FROM %q; only scratch can be reproduced without pulling a base image", ins[last].args)
	}
	// Build arguments: the Dockerfile's defaults, then the options.
	args := map[string]string{}
	for _, in := range ins {
		if in.cmd == "ARG" {
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		}
	}
	cfg := v1.Config{Env: []string{defaultPath}, Labels: map[string]string{}}
	var layers []v1.Layer
	srcs := o.sources()
	for _, in := range ins[last+1:] {
		if in.cmd == "ARG" {
			continue
		}
		args["VERSION"], args["COMMIT"] = o.version, o.commit
		expand := func(s string) string {
			return os.Expand(s, func(k string) string { return args[k] })
		}
		switch in.cmd {
		case "LABEL", "ENV":
			pairs, err := keyValues(in.args)
			if err != nil {
				return nil, in.errorf(o.dockerfile, "%v", err)
			}
			for _, kv := range pairs {
				if in.cmd == "LABEL" {
					cfg.Labels[kv[0]] = expand(kv[1])
				} else {
					cfg.Env = setEnv(cfg.Env, kv[0], expand(kv[1]))
				}
			}
		case "USER":
			cfg.User = expand(in.args)
		case "WORKDIR":
			cfg.WorkingDir = expand(in.args)
		case "EXPOSE":
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range strings.Fields(in.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				cfg.ExposedPorts[p] = struct{}{}
			}
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil {
				return nil, in.errorf(o.dockerfile, "want the exec form, a JSON array of strings: %v", err)
			}
			if in.cmd == "ENTRYPOINT" {
				cfg.Entrypoint = argv
			} else {
				cfg.Cmd = argv
			}
		case "COPY":
			l, err := copyLayer(in, o.dockerfile, srcs)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
		default:
			return nil, in.errorf(o.dockerfile, "the image builder (deploy/image) does not reproduce this instruction in the final stage")
		}
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", o.arch, cfg
	return mutate.ConfigFile(img, cf)
}

// copyLayer is the layer of one COPY: each source at its destination,
// with the owner of --chown and the parent directories it needs.
func copyLayer(in instruction, file string, srcs map[string]source) (v1.Layer, error) {
	var uid, gid int
	var paths []string
	for _, f := range strings.Fields(in.args) {
		switch {
		case strings.HasPrefix(f, "--from="):
		case strings.HasPrefix(f, "--chown="):
			u, g, _ := strings.Cut(strings.TrimPrefix(f, "--chown="), ":")
			var err1, err2 error
			uid, err1 = strconv.Atoi(u)
			gid, err2 = strconv.Atoi(g)
			if err1 != nil || err2 != nil {
				return nil, in.errorf(file, "--chown=%s: want numeric UID:GID", strings.TrimPrefix(f, "--chown="))
			}
		case strings.HasPrefix(f, "--"):
			return nil, in.errorf(file, "option %s is not reproduced by the image builder", f)
		default:
			paths = append(paths, f)
		}
	}
	if len(paths) != 2 {
		return nil, in.errorf(file, "want one source and one destination, got %q", paths)
	}
	src, dst := paths[0], paths[1]
	s, ok := srcs[src]
	if !ok {
		return nil, in.errorf(file, "%s: the image builder (deploy/image) does not know what the build stage puts there", src)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dst = strings.TrimPrefix(path.Clean(dst), "/")
	var parents []string
	for d := path.Dir(dst); d != "."; d = path.Dir(d) {
		parents = append([]string{d}, parents...)
	}
	for _, d := range parents {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	if s.file == "" {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: dst + "/", Uid: uid, Gid: gid, Mode: tarMode(s.mode)}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	} else {
		data, err := os.ReadFile(s.file)
		if err != nil {
			return nil, in.errorf(file, "%s: %v", src, err)
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: dst, Uid: uid, Gid: gid, Mode: tarMode(s.mode), Size: int64(len(data))}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// tarMode is the tar header mode of m: permission bits and the sticky bit.
func tarMode(m os.FileMode) int64 {
	mode := int64(m.Perm())
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// keyValues splits `k1=v1 k2="v 2"` (LABEL and ENV) into pairs.
func keyValues(s string) ([][2]string, error) {
	var out [][2]string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\"") {
			return nil, fmt.Errorf("want key=value pairs, got %q", s)
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := -1
			for i := 1; i < len(rest); i++ {
				if rest[i] == '\\' {
					i++
					continue
				}
				if rest[i] == '"' {
					end = i
					break
				}
			}
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote after %s=", k)
			}
			uq, err := strconv.Unquote(rest[:end+1])
			if err != nil {
				return nil, fmt.Errorf("value of %s: %v", k, err)
			}
			v, s = uq, rest[end+1:]
		} else {
			v, s, _ = strings.Cut(rest, " ")
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// setEnv sets k=v in env, replacing an earlier value of k.
func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// writeTarball writes img as a tarball that `docker load` and `crane push`
// read, and returns its digest.
func writeTarball(img v1.Image, tag, out string) (string, error) {
	ref, err := name.NewTag(tag)
	if err != nil {
		return "", fmt.Errorf("--tag %q: %v", tag, err)
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
