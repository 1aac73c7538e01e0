package buildinfo

import (
	"runtime/debug"
	"testing"
)

// TestVersionOf: the -ldflags values win, then what the toolchain
// stamped, then "dev" and "unknown".
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
		if v, cm := Version(c.ldVersion, c.info), Commit(c.ldCommit, c.info); v != c.version || cm != c.commit {
			t.Errorf("ldflags %q/%q: got %s (commit %s), want %s (commit %s)", c.ldVersion, c.ldCommit, v, cm, c.version, c.commit)
		}
	}
}
