package cfapitest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// maxMethods is the house limit on the methods one type declares.
const maxMethods = 25

// TestNoTypeOverMaxMethods counts the methods each type of the package's
// non-test files declares and fails for any type over maxMethods, naming
// it, so that the emulator keeps growing on small types.
func TestNoTypeOverMaxMethods(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Recv == nil || len(fd.Recv.List) == 0 {
					continue
				}
				counts[receiverName(fd.Recv.List[0].Type)]++
			}
		}
	}
	if counts["Server"] == 0 {
		t.Fatalf("found no methods of Server: counts %v", counts)
	}
	for name, n := range counts {
		if n > maxMethods {
			t.Errorf("type %s declares %d methods, more than %d", name, n, maxMethods)
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
	case *ast.Ident:
		return x.Name
	}
	return ""
}
