// Package builtinplaybooks embeds the shipped playbook files in every
// binary, so that a responder started outside the checkout (with
// responder.playbooks left empty) still has its default set. The YAML
// files beside this one are the source; edit them, not a copy.
package builtinplaybooks

import (
	"embed"
	"io/fs"
)

//go:embed *.yaml
var files embed.FS

// FS returns the built-in playbook files, *.yaml at its root. It is
// read-only and safe for concurrent use.
func FS() fs.FS { return files }
