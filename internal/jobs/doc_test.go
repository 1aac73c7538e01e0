package jobs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// walkCite is a function named in the walk with its file: "Runner.pull
// (intake.go)", "event.DecodeEvent (event/event.go)",
// "planner.Planner.Plan (internal/planner/plan.go)".
var walkCite = regexp.MustCompile(`([A-Za-z]+(?:\.[A-Za-z]+)*) \(([A-Za-z0-9_/]+\.go)\)`)

// TestDocWalkResolves checks the walk of one event in doc.go ("Follow one
// event"): every function it names is declared in the file it names (with
// that receiver), and it names at most 15 functions in at most 8 files.
func TestDocWalkResolves(t *testing.T) {
	data, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "# Follow one event")
	end := strings.Index(text, "// Beside that path")
	if start < 0 || end < start {
		t.Fatal(`doc.go has no "# Follow one event" section ending at "Beside that path"`)
	}
	walk := strings.ReplaceAll(text[start:end], "\n//", "")
	walk = strings.Join(strings.Fields(walk), " ")
	funcs, files := map[string]bool{}, map[string]bool{}
	for _, m := range walkCite.FindAllStringSubmatch(walk, -1) {
		name, file := m[1], m[2]
		path := file
		if strings.HasPrefix(file, "internal/") {
			path = filepath.Join("..", "..", file)
		}
		parts := strings.Split(name, ".")
		if len(parts) > 1 && parts[0] == filepath.Base(filepath.Dir(path)) {
			parts = parts[1:] // a package qualifier
		}
		recv, fn := "", parts[len(parts)-1]
		if len(parts) == 2 {
			recv = parts[0]
		}
		if !declares(t, path, recv, fn) {
			t.Errorf("the walk names %s (%s): no such function there", name, file)
		}
		funcs[name], files[file] = true, true
	}
	if len(funcs) == 0 || len(funcs) > 15 || len(files) > 8 {
		t.Errorf("the walk names %d functions in %d files, want 1 to 15 in at most 8", len(funcs), len(files))
	}
}

// declares reports whether the Go file at path declares function fn, as
// a method of recv when recv is not empty.
func declares(t *testing.T, path, recv, fn string) bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Errorf("parsing %s: %v", path, err)
		return false
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		if recv == "" {
			return fd.Recv == nil
		}
		if fd.Recv != nil && len(fd.Recv.List) == 1 {
			typ := fd.Recv.List[0].Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			if id, ok := typ.(*ast.Ident); ok && id.Name == recv {
				return true
			}
		}
	}
	return false
}
