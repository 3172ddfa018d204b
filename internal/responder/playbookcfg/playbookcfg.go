// Package playbookcfg loads the responder's playbook files from disk, or
// the built-in set embedded in the binary, into one validated
// playbooks.Set. The config key naming the files (responder.playbooks)
// belongs to internal/platform/config; this package takes the paths it
// holds.
//
// The files' contents are decoded by playbooks.Parse, not by viper: viper
// lowercases every map key, so a trigger's `labels: {Team: cx}` would
// silently stop matching the registry's `Team` label, and its errors name
// neither the line nor the playbook.
package playbookcfg

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	builtinplaybooks "github.com/agentwatch/agentwatch/deploy/playbooks"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// Key is the configuration key that lists the playbook files and
// directories; it names the source in errors.
const Key = "responder.playbooks"

// MaxFileBytes bounds one playbook file; a real one is a few KB.
const MaxFileBytes = 1 << 20

// Extensions are the file name endings read from a directory.
var extensions = []string{".yaml", ".yml", ".json"}

// BuiltinPrefix starts the file names of the built-in playbooks in
// errors and in playbooks.Playbook.File ("builtin:default.yaml"), so they
// are not mistaken for files on disk.
const BuiltinPrefix = "builtin:"

// LoadOrBuiltin is what the responder calls with responder.playbooks: the
// built-in set when paths is empty (the default, which works wherever
// the binary runs), else Load(paths).
func LoadOrBuiltin(paths []string) (playbooks.Set, error) {
	if len(paths) == 0 {
		return Builtin()
	}
	return Load(paths)
}

// Builtin returns the playbooks embedded in the binary (deploy/playbooks),
// validated like files on disk: the *.yaml files in lexical order, each
// named BuiltinPrefix+file in errors. An error here is a bug in the
// shipped files, which a unit test catches before release.
func Builtin() (playbooks.Set, error) {
	return loadFS(builtinplaybooks.FS(), BuiltinPrefix)
}

// loadFS loads the *.yaml files at the root of fsys like Load loads a
// directory, naming each prefix+name.
func loadFS(fsys fs.FS, prefix string) (playbooks.Set, error) {
	names, err := fs.Glob(fsys, "*.yaml") // sorted, as ReadDir is
	if err != nil {
		return playbooks.Set{}, fmt.Errorf("load built-in playbooks: %w", err)
	}
	if len(names) == 0 {
		return playbooks.Set{}, errors.New("load built-in playbooks: none embedded")
	}
	var all playbooks.Set
	var errs []error
	for _, name := range names {
		f, err := fsys.Open(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("load built-in playbooks: %w", err))
			continue
		}
		set, err := parse(prefix+name, f)
		f.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		all.Playbooks = append(all.Playbooks, set.Playbooks...)
	}
	if len(errs) > 0 {
		return playbooks.Set{}, errors.Join(errs...)
	}
	if err := all.Validate(); err != nil {
		return playbooks.Set{}, err
	}
	return all, nil
}

// Load reads the playbook files named by paths and returns them as one
// validated Set. Each path is a file, or a directory whose *.yaml, *.yml
// and *.json files are read in lexical order (not recursively; names
// starting with "." are skipped, which leaves out a Kubernetes ConfigMap
// volume's ..data entries). Playbooks keep the order of paths, then of
// files, then of the file: that order decides where a `final` playbook
// stops the search, so prefix files with numbers (10-exfil.yaml,
// 90-catch-all.yaml). Every problem of every file is reported at once,
// each naming its file, and a playbook name used in two files is an
// error naming both. Load does no caching: call it again to reload.
func Load(paths []string) (playbooks.Set, error) {
	if len(paths) == 0 {
		return playbooks.Set{}, fmt.Errorf("%s: no playbook files; set it to a directory such as deploy/playbooks or a list of files", Key)
	}
	var files []string
	var errs []error
	for _, p := range paths {
		fs, err := expand(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, fs...)
	}
	var sets []playbooks.Set
	for _, f := range files {
		set, err := loadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sets = append(sets, set)
	}
	if len(errs) > 0 {
		return playbooks.Set{}, errors.Join(errs...)
	}
	var all playbooks.Set
	for _, s := range sets {
		all.Playbooks = append(all.Playbooks, s.Playbooks...)
	}
	// Each file is valid alone; this finds names used in two files.
	if err := all.Validate(); err != nil {
		return playbooks.Set{}, err
	}
	return all, nil
}

// expand returns path itself, or the playbook files of directory path.
func expand(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load playbooks (%s): %w", Key, err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("load playbooks (%s): %w", Key, err)
	}
	var out []string
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		if strings.HasPrefix(name, ".") || !slices.Contains(extensions, strings.ToLower(filepath.Ext(name))) {
			continue
		}
		p := filepath.Join(path, name)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() { // follows symlinks, as ConfigMap files are
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load playbooks (%s): directory %s holds no *.yaml, *.yml or *.json file", Key, path)
	}
	return out, nil
}

func loadFile(path string) (playbooks.Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return playbooks.Set{}, fmt.Errorf("load playbooks (%s): %w", Key, err)
	}
	defer f.Close()
	return parse(path, f)
}

// parse reads one playbook file of at most MaxFileBytes named path.
func parse(path string, f io.Reader) (playbooks.Set, error) {
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return playbooks.Set{}, fmt.Errorf("load playbooks (%s): read %s: %w", Key, path, err)
	}
	if len(data) > MaxFileBytes {
		return playbooks.Set{}, fmt.Errorf("%s: larger than %d bytes; split it into several files", path, MaxFileBytes)
	}
	return playbooks.Parse(path, data)
}
