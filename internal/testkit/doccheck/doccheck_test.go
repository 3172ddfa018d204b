package doccheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const fence = "```"
	cases := []struct {
		name    string
		src     string
		blocks  []Block // File is "x.md"; only Line, Lang, Marker, Test, Body are compared
		wantErr []string
	}{
		{"marked illustration", "<!-- illustration -->\n" + fence + "sh\nmake demo\n" + fence + "\n",
			[]Block{{Line: 2, Lang: "sh", Marker: Illustration, Body: "make demo\n"}}, nil},
		{"illustration with a reason", "<!-- illustration: needs Slack -->\n\n" + fence + "console\n$ x\n" + fence + "\n",
			[]Block{{Line: 3, Lang: "console", Marker: Illustration, Body: "$ x\n"}}, nil},
		{"tested", "text\n<!-- tested: TestIntegrationQuickStart -->\n" + fence + "bash\na\nb\n" + fence + "\n",
			[]Block{{Line: 3, Lang: "bash", Marker: Tested, Test: "TestIntegrationQuickStart", Body: "a\nb\n"}}, nil},
		{"indented in a list", "- step\n\n  <!-- tested: TestX -->\n  " + fence + "sh\n  echo hi\n    two\n  " + fence + "\n",
			[]Block{{Line: 4, Lang: "sh", Marker: Tested, Test: "TestX", Body: "echo hi\n  two\n"}}, nil},
		{"yaml needs no marker", fence + "yaml\na: 1\n" + fence + "\n", []Block{{Line: 1, Lang: "yaml", Body: "a: 1\n"}}, nil},
		{"tildes and a longer fence", "<!-- illustration -->\n~~~~sh\n~~~\n~~~~\n", []Block{{Line: 2, Lang: "sh", Marker: Illustration, Body: "~~~\n"}}, nil},
		{"unmarked shell", "Run:\n" + fence + "sh\nmake demo\n" + fence + "\n", nil, []string{"x.md:2", "without a marker"}},
		{"marker not right before", "<!-- illustration -->\ntext\n" + fence + "sh\nx\n" + fence + "\n", nil, []string{"x.md:3", "without a marker"}},
		{"marker does not carry over a block", "<!-- illustration -->\n" + fence + "sh\nx\n" + fence + "\n" + fence + "sh\ny\n" + fence + "\n",
			nil, []string{"x.md:5", "without a marker"}},
		{"unlabelled", fence + "\nmake demo\n" + fence + "\n", nil, []string{"x.md:1", "without a language"}},
		{"tested without a name", "<!-- tested -->\n" + fence + "sh\nx\n" + fence + "\n", nil, []string{"x.md:2", "tested: TestName"}},
		{"tested with a bad name", "<!-- tested: quickstart -->\n" + fence + "sh\nx\n" + fence + "\n", nil, []string{"x.md:2", "tested: TestName"}},
		{"tested console", "<!-- tested: TestX -->\n" + fence + "console\n$ x\n" + fence + "\n", nil, []string{"x.md:2", "cannot be run"}},
		{"unclosed", "<!-- illustration -->\n" + fence + "sh\nx\n", nil, []string{"x.md:2", "never closed"}},
		{"other comments are no marker", "<!-- detector-numbers:begin -->\n" + fence + "sh\nx\n" + fence + "\n", nil, []string{"without a marker"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocks, errs := Parse("x.md", []byte(c.src))
			if len(c.wantErr) == 0 {
				if len(errs) > 0 {
					t.Fatalf("errors %v", errs)
				}
				if len(blocks) != len(c.blocks) {
					t.Fatalf("got %d blocks %+v, want %d", len(blocks), blocks, len(c.blocks))
				}
				for i, want := range c.blocks {
					want.File = "x.md"
					if blocks[i] != want {
						t.Errorf("block %d = %+v, want %+v", i, blocks[i], want)
					}
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("got errors %v, want one containing %q", errs, c.wantErr)
			}
			for _, s := range c.wantErr {
				if !strings.Contains(errs[0].Error(), s) {
					t.Errorf("error %q does not contain %q", errs[0], s)
				}
			}
		})
	}
}

// TestDocsMarked is the convention's enforcement: every shell block of
// README.md and docs/*.md is marked, and every test a marker names exists
// and takes its script from the docs (it calls doccheck.Script or
// doccheck.Run), so the commands it runs are the ones shown.
func TestDocsMarked(t *testing.T) {
	root := moduleRoot(t)
	blocks, errs := All(root)
	for _, err := range errs {
		t.Error(err)
	}
	tests := docTests(t, root)
	shell, tested := 0, 0
	for _, b := range blocks {
		if ShellLangs[b.Lang] {
			shell++
		}
		if b.Marker != Tested {
			continue
		}
		tested++
		switch reads, ok := tests[b.Test]; {
		case !ok:
			t.Errorf("%s: marked tested: %s, but no test function of that name exists", b, b.Test)
		case !reads:
			t.Errorf("%s: marked tested: %s, but that test does not call doccheck.Script or doccheck.Run, so it does not run this block", b, b.Test)
		}
	}
	t.Logf("%d shell blocks, %d of them run by tests", shell, tested)
}

// docTests maps every Test function of the module's _test.go files to
// whether its body calls doccheck.Script or doccheck.Run (or, inside this
// package, Script or Run).
func docTests(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin" || n == "out") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		inPkg := f.Name.Name == "doccheck"
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Body == nil || !strings.HasPrefix(fn.Name.Name, "Test") {
				continue
			}
			reads := false
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				switch f := call.Fun.(type) {
				case *ast.SelectorExpr:
					if x, ok := f.X.(*ast.Ident); ok && x.Name == "doccheck" && (f.Sel.Name == "Script" || f.Sel.Name == "Run") {
						reads = true
					}
				case *ast.Ident:
					if inPkg && (f.Name == "Script" || f.Name == "Run") {
						reads = true
					}
				}
				return true
			})
			out[fn.Name.Name] = out[fn.Name.Name] || reads
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

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
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
