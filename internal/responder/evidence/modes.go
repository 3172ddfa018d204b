package evidence

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// Modes of what Snapshot writes. Bundles hold the agents' events (paths,
// query parameters, source addresses), so only the responder's user may
// read them; files and bundle directories are also read-only, so that
// nothing here changes a bundle once written.
const (
	// FileMode is a bundle file's mode once written.
	FileMode fs.FileMode = 0o400
	// DirMode is a bundle directory's mode once published: readable by
	// the owner only and read-only, so no file can be added by mistake.
	DirMode fs.FileMode = 0o500
	// RootMode is the evidence root's mode when Snapshot creates it.
	RootMode fs.FileMode = 0o700
	// workMode is a bundle directory's mode while it is written or taken
	// back.
	workMode fs.FileMode = 0o700
)

// OpenModes lists the paths under root (root included) that users other
// than the owner may read, write or enter: any group or other permission
// bit set. Bundles written before modes were tightened are listed, so the
// responder can say so at start. At most limit paths are returned (limit
// < 1: all), with the total count. A missing root is no error.
func OpenModes(root string, limit int) (paths []string, total int, err error) {
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return filepath.SkipAll
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // Verify reports links; their own mode means nothing
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			total++
			if limit < 1 || len(paths) < limit {
				paths = append(paths, path)
			}
		}
		return nil
	})
	if err != nil {
		return paths, total, fmt.Errorf("check modes under %s: %w", root, err)
	}
	return paths, total, nil
}

// OpenModesError is what a responder logs when OpenModes found paths: it
// names the first ones and says how to fix all of them.
func OpenModesError(root string, paths []string, total int) error {
	if total == 0 {
		return nil
	}
	return fmt.Errorf("%d evidence paths under %s are readable or writable by users other than the responder's (first: %q); bundles hold the agents' events: run `chmod -R go-rwx %s`",
		total, root, paths, root)
}
