// Package doccheck keeps the shell commands in README.md and docs/*.md
// honest: every sh, bash, shell or console block is either run by a named
// test or marked as an illustration, so an example cannot break silently.
//
// The convention, written in the Markdown itself: the line before a
// fenced block (blank lines aside) is an HTML comment, invisible on GitHub,
//
//	<!-- illustration -->              shown, not run (needs a production system, or is a sketch)
//	<!-- tested: TestIntegrationX -->  run by the test of that name, which reads the block from the file
//
// A test that runs blocks calls Script (or Run) with its own *testing.T:
// the blocks it gets are the ones marked with its name, so the Markdown is
// the test's input and cannot drift from what the test runs. Every fenced
// block must also name its language (text for output and diagrams), so a
// command cannot hide in an unlabelled block.
package doccheck

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// ShellLangs are the info strings whose blocks need a marker.
var ShellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true}

// runnable are the shell languages a test may run: a console block mixes
// commands with their output, so it can only be an illustration.
var runnable = map[string]bool{"sh": true, "bash": true, "shell": true}

// Marker kinds.
const (
	Illustration = "illustration"
	Tested       = "tested"
)

// Block is one fenced code block of a Markdown file.
type Block struct {
	File   string // as given to Parse, e.g. "README.md"
	Line   int    // 1-based line of the opening fence
	Lang   string // first word of the info string, lower case
	Marker string // "", Illustration or Tested
	Test   string // the test named by a Tested marker
	Body   string // the lines between the fences, indentation of the fence removed
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

var (
	fenceRE  = regexp.MustCompile("^( *)(`{3,}|~{3,})\\s*(.*)$")
	markerRE = regexp.MustCompile(`^<!--\s*(.*?)\s*-->$`)
	testRE   = regexp.MustCompile(`^Test[A-Za-z0-9_]*$`)
)

// Parse returns the fenced blocks of one Markdown file and the problems
// that break the convention: an unlabelled block, an unmarked shell block,
// a malformed marker, a tested marker on a block a test cannot run, or an
// unclosed fence. Every problem names file:line.
func Parse(name string, src []byte) ([]Block, []error) {
	var (
		blocks []Block
		errs   []error
		prev   string // last non-blank line outside a block, trimmed
		open   *Block
		indent int
		fence  string
		body   []string
	)
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if open != nil {
			if t := strings.TrimSpace(line); strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]) == "" {
				open.Body = strings.Join(body, "\n")
				if len(body) > 0 {
					open.Body += "\n"
				}
				blocks = append(blocks, *open)
				open, body, prev = nil, nil, ""
				continue
			}
			// Drop the fence's own indentation (blocks inside list items).
			cut := 0
			for cut < indent && cut < len(line) && line[cut] == ' ' {
				cut++
			}
			body = append(body, line[cut:])
			continue
		}
		m := fenceRE.FindStringSubmatch(line)
		if m == nil {
			if t := strings.TrimSpace(line); t != "" {
				prev = t
			}
			continue
		}
		b := Block{File: name, Line: n}
		if f := strings.Fields(m[3]); len(f) > 0 {
			b.Lang = strings.ToLower(f[0])
		}
		malformed := false
		if mm := markerRE.FindStringSubmatch(prev); mm != nil {
			kind, arg, _ := strings.Cut(mm[1], ":")
			kind, arg = strings.TrimSpace(kind), strings.TrimSpace(arg)
			switch {
			case kind == Illustration:
				b.Marker = Illustration
			case kind == Tested && testRE.MatchString(arg):
				b.Marker, b.Test = Tested, arg
			case kind == Tested:
				malformed = true
				errs = append(errs, fmt.Errorf("%s: marker %q: want <!-- tested: TestName -->", b, prev))
			}
		}
		switch {
		case malformed:
		case b.Lang == "":
			errs = append(errs, fmt.Errorf("%s: fenced block without a language: name it (text for output and diagrams, sh for commands)", b))
		case ShellLangs[b.Lang] && b.Marker == "":
			errs = append(errs, fmt.Errorf("%s: %s block without a marker: put <!-- illustration --> or <!-- tested: TestName --> on the line before it", b, b.Lang))
		case b.Marker == Tested && !runnable[b.Lang]:
			errs = append(errs, fmt.Errorf("%s: a %s block cannot be run by %s: only sh, bash and shell blocks can (console mixes commands and output)", b, b.Lang, b.Test))
		}
		open, indent, fence = &b, len(m[1]), m[2]
	}
	if open != nil {
		errs = append(errs, fmt.Errorf("%s: fence %s is never closed", open, fence))
	}
	return blocks, errs
}

// Files are the Markdown files the convention covers, relative to the
// module root: README.md and docs/*.md.
func Files(root string) ([]string, error) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	out := []string{"README.md"}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			return nil, err
		}
		out = append(out, filepath.ToSlash(rel))
	}
	sort.Strings(out[1:])
	return out, nil
}

// All parses every file of Files(root).
func All(root string) ([]Block, []error) {
	files, err := Files(root)
	if err != nil {
		return nil, []error{err}
	}
	var (
		blocks []Block
		errs   []error
	)
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b, e := Parse(f, src)
		blocks = append(blocks, b...)
		errs = append(errs, e...)
	}
	return blocks, errs
}

// TestName is the top-level name of t: the one a tested marker uses.
func TestName(t testing.TB) string {
	name, _, _ := strings.Cut(t.Name(), "/")
	return name
}

// Script returns the blocks marked "tested: <t's name>" in README.md and
// docs/*.md under root, in file order, as one shell script that stops at
// the first failing command. It fails t when the docs break the convention
// or no block names t, so a renamed test or a lost marker is an error.
func Script(t testing.TB, root string) string {
	t.Helper()
	blocks, errs := All(root)
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	name := TestName(t)
	var b strings.Builder
	b.WriteString("set -euo pipefail\n")
	n := 0
	for _, bl := range blocks {
		if bl.Marker != Tested || bl.Test != name {
			continue
		}
		n++
		fmt.Fprintf(&b, "\n# --- %s\n%s", bl, bl.Body)
	}
	if n == 0 {
		t.Fatalf("no block in README.md or docs/*.md is marked <!-- tested: %s -->", name)
	}
	return b.String()
}

// Run runs Script(t, root) with bash in root, with env added to the
// environment, and fails t with the output when it fails or outlasts
// timeout. It is for blocks that finish on their own; a test whose blocks
// leave processes behind runs the script itself and kills them.
func Run(t testing.TB, root string, timeout time.Duration, env ...string) string {
	t.Helper()
	script := Script(t, root)
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bash: %v", err)
	}
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the blocks marked tested: %s failed: %v\n--- script\n%s\n--- output\n%s", TestName(t), err, script, out.String())
	}
	return out.String()
}
