// Package buildinfo says which version and commit a binary is, from its
// -ldflags values and what the Go toolchain stamped. It imports nothing of
// the project; cmd/reconciler and cmd/bench may import it.
package buildinfo

import "runtime/debug"

// Version returns the version a binary was built as: ldflags (the -X
// value) unless empty or "dev", else the module version the Go toolchain
// stamped in info, else "dev".
func Version(ldflags string, info *debug.BuildInfo) string {
	if ldflags != "dev" && ldflags != "" {
		return ldflags
	}
	if info != nil && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// Commit returns the commit a binary was built from: ldflags (the -X
// value) unless empty, else the VCS revision the Go toolchain stamped in
// info ("-dirty" when modified), else "unknown".
func Commit(ldflags string, info *debug.BuildInfo) string {
	c, modified := ldflags, false
	if info != nil {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.modified":
				modified = ldflags == "" && s.Value == "true"
			}
		}
	}
	if c == "" {
		c = "unknown"
	} else if modified {
		c += "-dirty"
	}
	return c
}
