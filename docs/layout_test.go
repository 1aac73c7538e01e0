package docs

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The house limits (CONTRIBUTING.md, "Layout"): the non-test files of one package
// hold at most maxPackageLines lines (the emulator excepted: it models a
// whole API), and no type declares more than maxMethods methods.
const (
	maxPackageLines = 2500
	maxMethods      = 25
)

// linesExempt are the packages the line limit does not apply to.
var linesExempt = map[string]bool{"internal/cfapi/cfapitest": true}

// TestEveryPackageFitsItsRoom checks the two limits over every package of
// the module, naming the package or type over one.
func TestEveryPackageFitsItsRoom(t *testing.T) {
	root := moduleRoot(t)
	lines := map[string]int{}   // package dir -> non-test lines
	methods := map[string]int{} // "dir.Type" -> methods declared
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		dir = filepath.ToSlash(dir)
		lines[dir] += bytes.Count(data, []byte("\n"))
		f, err := parser.ParseFile(fset, path, data, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Recv == nil || len(fd.Recv.List) == 0 {
				continue
			}
			methods[dir+"."+receiverName(fd.Recv.List[0].Type)]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lines["internal/jobs"] == 0 || methods["internal/jobs.Runner"] == 0 {
		t.Fatalf("found no internal/jobs or its Runner under %s", root)
	}
	var dirs []string
	for dir := range lines {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		if lines[dir] > maxPackageLines && !linesExempt[dir] {
			t.Errorf("package %s has %d non-test lines, more than %d", dir, lines[dir], maxPackageLines)
		}
	}
	for typ, n := range methods {
		if n > maxMethods {
			t.Errorf("type %s declares %d methods, more than %d", typ, n, maxMethods)
		}
	}
}

// receiverName returns the base type name of a method receiver.
func receiverName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return receiverName(x.X)
	case *ast.IndexExpr:
		return receiverName(x.X)
	case *ast.IndexListExpr:
		return receiverName(x.X)
	case *ast.Ident:
		return x.Name
	}
	return ""
}
