// Package specschema checks request bodies against the request types of
// Cloudflare's official Go SDK (github.com/cloudflare/cloudflare-go/v7),
// which is generated from the API's OpenAPI spec: the closest thing to the
// API's published contract that a test can run here.
//
// It reads the SDK's source from the module cache (the module is a test
// dependency of this repository) with go/parser rather than reflection,
// because the SDK's unions are interfaces whose variants only the source
// names (each variant has a method implements<Union>). A body is checked
// member by member: every member must be a json member of the SDK type at
// that place, recursively through structs, slices, maps and unions; a
// union of bindings picks its variant by the "type" member. Values are
// not checked, only which members are sent.
//
// It is for tests only; nothing in the product imports it.
package specschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Module is the SDK module whose types are the spec.
const Module = "github.com/cloudflare/cloudflare-go/v7"

// Schema is the request types of some packages of the SDK.
type Schema struct {
	pkgs map[string]*pkg
}

type pkg struct {
	name    string
	structs map[string]map[string]ast.Expr // type -> json member -> type
	unions  map[string][]string            // interface -> implementing types
	enums   map[string][]string            // string type -> its constants
}

// Load reads the named packages of the SDK (for example "workers" and
// "workers_for_platforms") from the module cache, asking the go tool where
// the module is.
func Load(pkgs ...string) (*Schema, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", Module).Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m %s: %w (is it in go.mod and downloaded?)", Module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return nil, fmt.Errorf("go list -m %s: the module is not downloaded (run go mod download)", Module)
	}
	s := &Schema{pkgs: map[string]*pkg{}}
	for _, name := range pkgs {
		p, err := loadPkg(filepath.Join(dir, name), name)
		if err != nil {
			return nil, err
		}
		s.pkgs[name] = p
	}
	return s, nil
}

func loadPkg(dir, name string) (*pkg, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	p := &pkg{name: name, structs: map[string]map[string]ast.Expr{}, unions: map[string][]string{}, enums: map[string][]string{}}
	fset := token.NewFileSet()
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				p.addGen(d)
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) != 1 || !strings.HasPrefix(d.Name.Name, "implements") {
					continue
				}
				if id, ok := d.Recv.List[0].Type.(*ast.Ident); ok {
					u := strings.TrimPrefix(d.Name.Name, "implements")
					p.unions[u] = append(p.unions[u], id.Name)
				}
			}
		}
	}
	return p, nil
}

func (p *pkg) addGen(d *ast.GenDecl) {
	for _, sp := range d.Specs {
		switch sp := sp.(type) {
		case *ast.TypeSpec:
			st, ok := sp.Type.(*ast.StructType)
			if !ok {
				continue
			}
			members := map[string]ast.Expr{}
			for _, f := range st.Fields.List {
				if f.Tag == nil {
					continue
				}
				tag, err := strconv.Unquote(f.Tag.Value)
				if err != nil {
					continue
				}
				name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
				if name == "" || name == "-" {
					continue
				}
				members[name] = f.Type
			}
			p.structs[sp.Name.Name] = members
		case *ast.ValueSpec:
			id, ok := sp.Type.(*ast.Ident)
			if !ok || d.Tok != token.CONST {
				continue
			}
			for _, v := range sp.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						p.enums[id.Name] = append(p.enums[id.Name], s)
					}
				}
			}
		}
	}
}

// Has reports whether package pkgName has the struct type typeName.
func (s *Schema) Has(pkgName, typeName string) bool {
	p := s.pkgs[pkgName]
	if p == nil {
		return false
	}
	_, ok := p.structs[typeName]
	return ok
}

// Check returns the members of the JSON body that the SDK type
// pkgName.typeName does not have, as paths ("bindings[3](kv_namespace).foo:
// not a member of X"), sorted; none means the body speaks the spec.
func (s *Schema) Check(pkgName, typeName string, body []byte) ([]string, error) {
	p := s.pkgs[pkgName]
	if p == nil {
		return nil, fmt.Errorf("package %s is not loaded", pkgName)
	}
	if _, ok := p.structs[typeName]; !ok {
		return nil, fmt.Errorf("%s.%s is not a struct type of the SDK", pkgName, typeName)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("the body is not JSON: %w", err)
	}
	c := &checker{p: p}
	c.check(v, ast.NewIdent(typeName), "")
	sort.Strings(c.bad)
	return c.bad, nil
}

type checker struct {
	p   *pkg
	bad []string
}

func (c *checker) report(path, format string, a ...any) {
	if path == "" {
		path = "(body)"
	}
	c.bad = append(c.bad, path+": "+fmt.Sprintf(format, a...))
}

// check checks v against the type expression t at path.
func (c *checker) check(v any, t ast.Expr, path string) {
	switch t := t.(type) {
	case *ast.IndexExpr: // param.Field[T]
		c.check(v, t.Index, path)
	case *ast.StarExpr:
		c.check(v, t.X, path)
	case *ast.ArrayType:
		if arr, ok := v.([]any); ok {
			for i, e := range arr {
				c.check(e, t.Elt, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	case *ast.MapType:
		if obj, ok := v.(map[string]any); ok {
			for k, e := range obj {
				c.check(e, t.Value, path+"."+k)
			}
		}
	case *ast.Ident:
		c.named(v, t.Name, path)
	default:
		// interface{}, another package's type (shared.…): any value.
	}
}

func (c *checker) named(v any, name, path string) {
	if members, ok := c.p.structs[name]; ok {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, e := range obj {
			mt, ok := members[k]
			if !ok {
				c.report(join(path, k), "not a member of %s", name)
				continue
			}
			c.check(e, mt, join(path, k))
		}
		return
	}
	variants, ok := c.p.unions[name]
	if !ok {
		return // a scalar or an enum
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		return // a union of scalars and objects, given a scalar
	}
	if typ, ok := obj["type"].(string); ok {
		if vt := c.variantOf(variants, typ); vt != "" {
			c.named(v, vt, path+"("+typ+")")
			return
		}
		c.report(path, "type %q is not a variant of %s", typ, name)
		return
	}
	// No discriminator: the variant that accepts the most members.
	var best []string
	for i, vt := range variants {
		sub := &checker{p: c.p}
		sub.named(v, vt, path)
		if i == 0 || len(sub.bad) < len(best) {
			best = sub.bad
		}
		if len(best) == 0 {
			return
		}
	}
	c.bad = append(c.bad, best...)
}

// variantOf returns the variant of a union whose "type" member takes only
// the value typ; failing that, one whose "type" member has typ among its
// values (the SDK's catch-all struct).
func (c *checker) variantOf(variants []string, typ string) string {
	catchAll := ""
	for _, vt := range variants {
		tt, ok := c.p.structs[vt]["type"]
		if !ok {
			continue
		}
		vals := c.enumOf(tt)
		for _, x := range vals {
			if x != typ {
				continue
			}
			if len(vals) == 1 {
				return vt
			}
			catchAll = vt
		}
	}
	return catchAll
}

func (c *checker) enumOf(t ast.Expr) []string {
	switch t := t.(type) {
	case *ast.IndexExpr:
		return c.enumOf(t.Index)
	case *ast.Ident:
		return c.p.enums[t.Name]
	}
	return nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
