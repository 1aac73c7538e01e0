package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	plain := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	for _, c := range []struct {
		ldVersion, ldCommit string
		info                *debug.BuildInfo
		version, commit     string
	}{
		{"dev", "", stamped, "v1.4.0", "abc123-dirty"},
		{"0.2.0", "feed", stamped, "0.2.0", "feed"},
		{"dev", "", plain, "dev", "unknown"},
		{"dev", "", nil, "dev", "unknown"},
	} {
		if v, cm := versionOf(c.ldVersion, c.info), commitOf(c.ldCommit, c.info); v != c.version || cm != c.commit {
			t.Errorf("ldflags %q/%q: got %s (commit %s), want %s (commit %s)", c.ldVersion, c.ldCommit, v, cm, c.version, c.commit)
		}
	}
}

// TestVersionFromBuildInfo: a plain `go build` (no -ldflags) of a git
// checkout prints the VCS revision the toolchain stamped, not "unknown".
func TestVersionFromBuildInfo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if fi, err := os.Stat("../../.git"); err != nil || !fi.IsDir() {
		t.Skip("not a plain git checkout: the Go toolchain stamps no VCS information in a git worktree (its .git is a file)")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("git rev-parse HEAD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "reconciler")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=true")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	rev := strings.TrimSpace(string(head))
	if !strings.Contains(string(out), "(commit "+rev) {
		t.Errorf("version printed %q, want the commit %s", out, rev)
	}
}
