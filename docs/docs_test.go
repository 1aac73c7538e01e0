package docs

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// pendingDocs are files of docs/ that other branches add. A citation of one
// is accepted while it is missing; once it exists it is checked like any
// other file, and the test asks for its entry to be deleted.
var pendingDocs = []string{}

// TestMarkdownCitationsResolve checks README.md, CONTRIBUTING.md and every
// docs/*.md: each relative link (and its #anchor, into a Markdown file)
// and each Markdown file named in the text must exist in the repository.
func TestMarkdownCitationsResolve(t *testing.T) {
	root := moduleRoot(t)
	files := []string{"README.md", "CONTRIBUTING.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		rel, _ := filepath.Rel(root, m)
		files = append(files, filepath.ToSlash(rel))
	}
	c := newChecker(root, pendingDocs)
	for _, f := range files {
		if err := c.markdownFile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	report(t, c)
	for _, p := range pendingDocs {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err == nil {
			t.Errorf("%s exists now: delete it from pendingDocs so that its anchors are checked too", p)
		}
	}
}

// TestGoCitationsResolve checks every Markdown file named in a comment or a
// string literal of a .go file of the repository.
func TestGoCitationsResolve(t *testing.T) {
	root := moduleRoot(t)
	c := newChecker(root, pendingDocs)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Like the go tool, skip hidden directories and testdata.
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		return c.goFile(filepath.ToSlash(rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	report(t, c)
}

// TestCheckerFindsBrokenCitations runs the checker on the small tree in
// testdata/citations, which holds one citation of each kind, good and bad;
// testdata/citations-want.txt lists what it must report.
func TestCheckerFindsBrokenCitations(t *testing.T) {
	root := filepath.Join("testdata", "citations")
	lines := func(name string) []string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	c := newChecker(root, lines("citations-pending.txt"))
	for _, f := range []string{"README", "docs/events"} {
		if err := c.markdownFile(f + ".md"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.goFile("pkg/a.go"); err != nil {
		t.Fatal(err)
	}
	if want := lines("citations-want.txt"); !slices.Equal(c.problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(c.problems, "\n"), strings.Join(want, "\n"))
	}
}

// checker resolves citations and collects the ones that fail.
type checker struct {
	root     string
	pending  map[string]bool
	problems []string
	anchors  map[string]map[string]bool // Markdown file -> heading slugs
}

func newChecker(root string, pending []string) *checker {
	c := &checker{root: root, pending: map[string]bool{}, anchors: map[string]map[string]bool{}}
	for _, p := range pending {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); errors.Is(err, fs.ErrNotExist) {
			c.pending[p] = true
		}
	}
	return c
}

var (
	// mdLink is an inline Markdown link or image: [text](target "title").
	mdLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	// mdName is a Markdown file named in text: a path ending in .md.
	mdName = regexp.MustCompile(`[A-Za-z0-9_][A-Za-z0-9_./-]*\.md\b(?:#[A-Za-z0-9_-]+)?`)
)

// markdownFile checks the links and the Markdown files named in file.
func (c *checker) markdownFile(file string) error {
	data, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(file)))
	if err != nil {
		return err
	}
	for i, line := range strings.Split(string(data), "\n") {
		rest := line
		for _, m := range mdLink.FindAllStringSubmatchIndex(line, -1) {
			target := line[m[2]:m[3]]
			c.cite(file, i+1, target, true)
			// Do not count the link's target again as a name.
			rest = strings.Replace(rest, line[m[0]:m[1]], "]()", 1)
		}
		c.names(file, i+1, rest)
	}
	return nil
}

// goFile checks the Markdown files named in the comments and string
// literals of a Go file.
func (c *checker) goFile(file string) error {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(c.root, filepath.FromSlash(file)), nil, parser.ParseComments)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, g := range f.Comments {
		for _, cm := range g.List {
			line := fset.Position(cm.Pos()).Line
			for j, l := range strings.Split(cm.Text, "\n") {
				c.names(file, line+j, l)
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			s = lit.Value
		}
		c.names(file, fset.Position(lit.Pos()).Line, s)
		return true
	})
	return nil
}

// names checks every Markdown file named in text, except inside addresses
// with a scheme.
func (c *checker) names(file string, line int, text string) {
	for _, word := range strings.Fields(text) {
		if strings.Contains(word, "://") {
			continue
		}
		for _, name := range mdName.FindAllString(word, -1) {
			c.cite(file, line, name, false)
		}
	}
}

// cite checks one citation of target by file at line; link says it is a
// Markdown link, whose target may be any file or directory.
func (c *checker) cite(file string, line int, target string, link bool) {
	if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return
	}
	what := fmt.Sprintf("%q", target)
	if link {
		what = "link " + what
	}
	path, anchor, _ := strings.Cut(target, "#")
	resolved := file
	if path != "" {
		var ok bool
		if resolved, ok = c.resolve(file, path); !ok {
			c.problems = append(c.problems, fmt.Sprintf("%s:%d: %s: no such file", file, line, what))
			return
		}
	}
	if anchor == "" || !strings.HasSuffix(resolved, ".md") || c.pending[resolved] {
		return
	}
	slugs, err := c.headings(resolved)
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("%s:%d: %s: %v", file, line, what, err))
		return
	}
	if !slugs[anchor] {
		c.problems = append(c.problems, fmt.Sprintf("%s:%d: %s: no heading %q in %s", file, line, what, anchor, resolved))
	}
}

// resolve returns the repository path of path cited by file: relative to
// file's directory, or else to the repository root.
func (c *checker) resolve(file, path string) (string, bool) {
	var candidates []string
	if !strings.HasPrefix(path, "/") {
		candidates = append(candidates, filepath.ToSlash(filepath.Join(filepath.Dir(file), path)))
	}
	candidates = append(candidates, filepath.ToSlash(filepath.Clean(strings.TrimPrefix(path, "/"))))
	for _, cand := range candidates {
		cand = strings.TrimSuffix(cand, "/")
		if cand == ".." || strings.HasPrefix(cand, "../") {
			continue // outside the repository
		}
		if c.pending[cand] {
			return cand, true
		}
		if _, err := os.Stat(filepath.Join(c.root, filepath.FromSlash(cand))); err == nil {
			return cand, true
		}
	}
	return "", false
}

// headings returns the anchors of the headings of a Markdown file, made
// as GitHub makes them: lower case, punctuation dropped, spaces as
// hyphens, a repeated heading numbered -1, -2, ….
func (c *checker) headings(file string) (map[string]bool, error) {
	if s, ok := c.anchors[file]; ok {
		return s, nil
	}
	data, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(file)))
	if err != nil {
		return nil, err
	}
	slugs := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimLeft(line, "#")
		if len(line)-len(text) > 6 || !strings.HasPrefix(text, " ") {
			continue
		}
		slug := slugify(strings.TrimSpace(text))
		if n := seen[slug]; n > 0 {
			seen[slug]++
			slug = fmt.Sprintf("%s-%d", slug, n)
		} else {
			seen[slug] = 1
		}
		slugs[slug] = true
	}
	c.anchors[file] = slugs
	return slugs, nil
}

func slugify(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// moduleRoot returns the directory of the module's go.mod, found from the
// test's working directory upwards.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// report fails t with every problem c found, one per line.
func report(t *testing.T, c *checker) {
	t.Helper()
	if len(c.problems) > 0 {
		t.Errorf("%d citations do not resolve:\n%s", len(c.problems), strings.Join(c.problems, "\n"))
	}
}

// testCite is a test, fuzz target or benchmark cited with its file, as the
// guarantees page cites them: `TestName` (dir/file_test.go).
var testCite = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)[A-Za-z0-9_/]*` \\(([A-Za-z0-9_./-]+\\.go)\\)")

// TestCitedTestsExist checks that every test cited with its file in
// README.md, CONTRIBUTING.md and docs/*.md is declared in that file, so
// that a test moved or renamed does not leave the evidence pointing
// nowhere.
func TestCitedTestsExist(t *testing.T) {
	root := moduleRoot(t)
	files := []string{"README.md", "CONTRIBUTING.md"}
	more, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, m := range more {
		rel, _ := filepath.Rel(root, m)
		files = append(files, filepath.ToSlash(rel))
	}
	declared := map[string]map[string]bool{} // Go file -> top-level functions
	funcs := func(file string) (map[string]bool, error) {
		if d, ok := declared[file]; ok {
			return d, nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, filepath.FromSlash(file)), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		d := map[string]bool{}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil {
				d[fn.Name.Name] = true
			}
		}
		declared[file] = d
		return d, nil
	}
	n := 0
	for _, md := range files {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(md)))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range testCite.FindAllStringSubmatch(line, -1) {
				n++
				d, err := funcs(m[2])
				if err != nil {
					t.Errorf("%s:%d: %s cited in %s: %v", md, i+1, m[1], m[2], err)
					continue
				}
				if !d[m[1]] {
					t.Errorf("%s:%d: %s is not declared in %s", md, i+1, m[1], m[2])
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no test cited with its file: the pattern no longer matches the docs")
	}
	t.Logf("%d cited tests found in their files", n)
}
