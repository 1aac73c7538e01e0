package deploy

import (
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDockerfile reads the Dockerfile (no container engine runs in the
// tests): its Go is at least the one go.mod asks for, it stamps the
// variables `reconciler version` prints, the image runs as a non-root user
// on an empty base, and .dockerignore keeps what the build needs.
func TestDockerfile(t *testing.T) {
	df := readFile(t, "Dockerfile")
	gomod := readFile(t, "../go.mod")

	goVersion := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(df)
	modGo := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)
	if goVersion == nil || modGo == nil {
		t.Fatalf("no ARG GO_VERSION in the Dockerfile (%v) or no go directive in go.mod (%v)", goVersion, modGo)
	}
	if olderGo(goVersion[1], modGo[1]) {
		t.Errorf("the Dockerfile builds with Go %s, older than go.mod's %s", goVersion[1], modGo[1])
	}
	if !strings.Contains(df, "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}") {
		t.Error("the build stage is not the golang image of GO_VERSION")
	}

	// The variables the ldflags set exist in package main.
	main := readFile(t, "../cmd/reconciler/main.go")
	for _, v := range []string{"version", "commit"} {
		if !strings.Contains(df, "-X main."+v+"=") {
			t.Errorf("the build does not stamp main.%s", v)
		}
		if !regexp.MustCompile(`(?m)^\s*` + v + `\s*=\s*"`).MatchString(main) {
			t.Errorf("cmd/reconciler/main.go has no string variable %s for -X main.%s", v, v)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/reconciler"} {
		if !strings.Contains(df, want) {
			t.Errorf("the build lacks %s", want)
		}
	}

	// The final stage: an empty base, a non-root numeric user, the binary.
	stages := strings.Split(df, "\nFROM ")
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final, "scratch") {
		t.Errorf("the final stage is FROM %s, want scratch", strings.SplitN(final, "\n", 2)[0])
	}
	user := regexp.MustCompile(`(?m)^USER (\d+)(?::(\d+))?$`).FindStringSubmatch(final)
	if user == nil || user[1] == "0" || user[2] == "0" {
		t.Errorf("the final stage runs as %v, want a numeric non-root USER (runAsNonRoot needs a number)", user)
	}
	for _, want := range []string{"ENTRYPOINT [\"/reconciler\"]", "EXPOSE 9464", "ca-certificates.crt"} {
		if !strings.Contains(final, want) {
			t.Errorf("the final stage lacks %s", want)
		}
	}

	// .dockerignore keeps the module.
	var patterns []string
	for _, line := range strings.Split(readFile(t, "../.dockerignore"), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimPrefix(line, "/"))
		}
	}
	for _, keep := range []string{"go.mod", "go.sum", "cmd/reconciler/main.go", "internal/jobs/setup.go",
		"internal/cfapi/client.go", "internal/planner/planner.go", "metrics/metrics.go"} {
		for _, p := range patterns {
			if ignored(p, keep) {
				t.Errorf(".dockerignore pattern %q drops %s, which the build needs", p, keep)
			}
		}
	}
	for _, drop := range []string{".git/config", "reconciler-data/x", "deploy/Dockerfile"} {
		dropped := false
		for _, p := range patterns {
			dropped = dropped || ignored(p, drop)
		}
		if !dropped {
			t.Errorf(".dockerignore keeps %s in the build context", drop)
		}
	}
}

// ignored reports whether a .dockerignore pattern (without negation)
// matches name or one of its parent directories.
func ignored(pattern, name string) bool {
	parts := strings.Split(name, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := path.Match(pattern, prefix); ok {
			return true
		}
		if rest, found := strings.CutPrefix(pattern, "**/"); found {
			if ok, _ := path.Match(rest, parts[i-1]); ok {
				return true
			}
		}
	}
	return false
}

// olderGo reports whether Go version a (such as 1.26.8) is older than b.
func olderGo(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
