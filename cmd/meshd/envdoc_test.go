package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// osConventions are variables read only as fallbacks that every Unix
// program shares; they configure nothing of meshd's own, so
// docs/env-vars.md need not list them.
var osConventions = map[string]string{
	"HOME": "meshctl: default config directory ~/.config/meshctl",
	"USER": "meshctl: default display name",
}

// TestEnvVarsDocumented keeps docs/env-vars.md and the code in step: every
// variable the Go code reads must have a row in one of the doc's tables,
// and every row must be read somewhere. Scanned: every non-test Go file of
// the module except the cmd/ tools other than meshd and meshctl
// (internal/testpg included, for MESHD_TEST_DATABASE_URL).
func TestEnvVarsDocumented(t *testing.T) {
	root := "../.."
	read, err := envReads(root)
	if err != nil {
		t.Fatal(err)
	}
	doc := documentedEnv(t, filepath.Join(root, "docs", "env-vars.md"))
	if len(read) < 15 || len(doc) < 15 {
		t.Fatalf("scanner found %d reads and %d documented variables: it is broken", len(read), len(doc))
	}
	for _, name := range sortedKeys(read) {
		if !doc[name] && osConventions[name] == "" {
			t.Errorf("%s is read (%s) but docs/env-vars.md has no row for it", name, strings.Join(read[name], ", "))
		}
	}
	for _, name := range sortedKeys(doc) {
		if _, ok := read[name]; !ok {
			t.Errorf("docs/env-vars.md documents %s but no Go code reads it", name)
		}
	}
}

var envNameRe = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// documentedEnv returns the variables of every table row that starts with
// a backquoted NAME.
func documentedEnv(t *testing.T, path string) map[string]bool {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\|\\s*`([A-Z][A-Z0-9_]*)`\\s*\\|")
	out := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(readFile(t, path)), -1) {
		out[m[1]] = true
	}
	return out
}

// envReads returns variable name → "file:line" of each place that reads it.
func envReads(root string) (map[string][]string, error) {
	fset := gotoken.NewFileSet()
	files := map[string][]*ast.File{} // by directory (package)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			base := d.Name()
			if rel != "." && (strings.HasPrefix(base, ".") || base == "testdata" || base == "vendor" || skippedCmd(rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files[filepath.Dir(path)] = append(files[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s := &envScanner{fset: fset, root: root, reads: map[string][]string{}, consts: map[string]map[string]string{}, anyConst: map[string]string{}}
	for dir, fs := range files {
		s.consts[dir] = stringConsts(fs, s.anyConst)
	}
	for dir, fs := range files {
		for _, f := range fs {
			s.scanFile(dir, f)
		}
	}
	if len(s.errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(s.errs, "\n"))
	}
	return s.reads, nil
}

func skippedCmd(rel string) bool {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	return len(parts) == 2 && parts[0] == "cmd" && parts[1] != "meshd" && parts[1] != "meshctl"
}

// stringConsts collects the package-level string constants of a package
// (also into all, keyed by bare name, for pkg.Const references).
func stringConsts(fs []*ast.File, all map[string]string) map[string]string {
	out := map[string]string{}
	for _, f := range fs {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != gotoken.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
							v, _ := strconv.Unquote(lit.Value)
							out[name.Name], all[name.Name] = v, v
						}
					}
				}
			}
		}
	}
	return out
}

type envScanner struct {
	fset     *gotoken.FileSet
	root     string
	reads    map[string][]string
	consts   map[string]map[string]string // dir → const name → value
	anyConst map[string]string
	errs     []string
}

// isGetter reports whether e is a function that reads the environment:
// os.Getenv, os.LookupEnv, syscall.Getenv, or an injected getenv (a
// variable, parameter or field named getenv, STYLE #20).
func isGetter(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "getenv"
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && (x.Name == "os" || x.Name == "syscall") {
			return e.Sel.Name == "Getenv" || e.Sel.Name == "LookupEnv"
		}
		return e.Sel.Name == "getenv"
	}
	return false
}

func (s *envScanner) scanFile(dir string, f *ast.File) {
	params := map[string]bool{} // parameter names: a getter called with one forwards its caller's name
	ast.Inspect(f, func(n ast.Node) bool {
		if ft, ok := n.(*ast.FuncType); ok && ft.Params != nil {
			for _, p := range ft.Params.List {
				for _, name := range p.Names {
					params[name.Name] = true
				}
			}
		}
		return true
	})
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		pos := s.fset.Position(call.Pos())
		rel, _ := filepath.Rel(s.root, pos.Filename)
		where := fmt.Sprintf("%s:%d", filepath.ToSlash(rel), pos.Line)
		if isGetter(call.Fun) && len(call.Args) > 0 {
			switch name, ok := s.resolve(dir, call.Args[0]); {
			case ok:
				s.reads[name] = append(s.reads[name], where)
			case isParam(call.Args[0], params):
				// a helper like intVar(getenv, name, …): its callers pass
				// getenv and a literal name, found below
			default:
				s.errs = append(s.errs, where+": environment read with a name the scanner cannot resolve; use a string literal or constant")
			}
			return true
		}
		// intVar(getenv, "BROKER_PORT", …): a call that passes a getter
		// along with upper-case string literals reads those variables.
		passesGetter := false
		for _, a := range call.Args {
			passesGetter = passesGetter || isGetter(a)
		}
		if passesGetter {
			for _, a := range call.Args {
				if name, ok := s.resolve(dir, a); ok && envNameRe.MatchString(name) {
					s.reads[name] = append(s.reads[name], where)
				}
			}
		}
		return true
	})
}

func isParam(e ast.Expr, params map[string]bool) bool {
	id, ok := e.(*ast.Ident)
	return ok && params[id.Name]
}

// resolve returns the value of a string literal or string constant.
func (s *envScanner) resolve(dir string, e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == gotoken.STRING {
			v, err := strconv.Unquote(e.Value)
			return v, err == nil
		}
	case *ast.Ident:
		v, ok := s.consts[dir][e.Name]
		return v, ok
	case *ast.SelectorExpr:
		if _, ok := e.X.(*ast.Ident); ok {
			v, ok := s.anyConst[e.Sel.Name]
			return v, ok
		}
	}
	return "", false
}

// TestEnvScanner pins the scanner's rules on a small source tree.
func TestEnvScanner(t *testing.T) {
	dir := t.TempDir()
	src := map[string]string{
		"cmd/meshd/config.go": `package main
import "os"
const envURL = "X_CONST"
func load(getenv func(string) string) {
	_ = getenv("X_DIRECT")
	_ = os.Getenv("X_OS")
	_ = os.Getenv(envURL)
	_ = intVar(getenv, "X_PASSED", 7)
}
func intVar(getenv func(string) string, name string, def int) int { _ = getenv(name); return def }
type cli struct{ getenv func(string) string }
func (c *cli) dir() string { return c.getenv("X_FIELD") }
`,
		"cmd/meshd/config_test.go": `package main
import "os"
var _ = os.Getenv("X_TEST_ONLY")
`,
		"cmd/othertool/main.go": `package main
import "os"
var _ = os.Getenv("X_OTHER_TOOL")
`,
	}
	for name, body := range src {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := envReads(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"X_CONST", "X_DIRECT", "X_FIELD", "X_OS", "X_PASSED"}
	if keys := sortedKeys(got); strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("reads %v, want %v", keys, want)
	}
	bad := filepath.Join(dir, "cmd/meshd/bad.go")
	if err := os.WriteFile(bad, []byte("package main\nimport \"os\"\nfunc f() { for _, v := range []string{\"A\"} { _ = os.Getenv(v) } }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := envReads(dir); err == nil || !strings.Contains(err.Error(), "cannot resolve") {
		t.Fatalf("unresolvable name: %v", err)
	}
}
