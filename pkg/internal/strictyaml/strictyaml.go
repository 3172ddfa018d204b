// Package strictyaml holds what pkg/inventory and pkg/playbooks share in
// decoding YAML strictly: both walk yaml.Node trees themselves, rather than
// use yaml.Decoder.KnownFields, so that every problem is reported at once
// with its file, line and field. This package reads the one document,
// bounds the work aliases can cause, names node kinds and suggests field
// names; the callers keep their own error types and walks.
//
// Pure: no I/O, no logging.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/suggest"
)

// ErrExtraDocument means the input holds more than one YAML document.
var ErrExtraDocument = errors.New("more than one YAML document (a second '---')")

// Decode parses data as exactly one YAML document and returns its root
// node. Empty input (or only comments) is io.EOF, a second document is
// ErrExtraDocument, and a syntax error is yaml's error, unwrapped (its
// text starts "yaml: ", then "line N: " where yaml knows the line).
func Decode(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, ErrExtraDocument
	}
	return &root, nil
}

// Resolve follows a document node to its content and an alias to its
// anchor (at most four steps) and charges the node it reaches to *budget,
// so that aliases cannot make a walk visit more nodes than the caller
// allows (a billion laughs is an error, not an OOM). It returns the node
// and true while budget remains. When this charge spends the last of it,
// it returns the node and false, once, for the caller to report at that
// node's line; after that, and when there is no node, nil and false.
func Resolve(n *yaml.Node, budget *int) (*yaml.Node, bool) {
	for i := 0; n != nil && i < 4 && (n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode); i++ {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			n = nil
		}
	}
	if n == nil || n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		return nil, false
	}
	*budget--
	switch {
	case *budget > 0:
		return n, true
	case *budget == 0:
		return n, false
	}
	return nil, false
}

// IsNull reports whether n is absent or an explicit null (`~`, `null` or
// nothing after the colon).
func IsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// KindName names what n is, for "want X, not <KindName>" errors; a
// scalar is quoted and cut to 40 bytes.
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("the scalar %.40q", n.Value)
	}
	return "an alias"
}

// Hint is the end of an "unknown field" error for key: "did you mean
// "x"?" with the known field it is closest to, which is also returned as
// meant, or the list of known fields and meant "".
func Hint(key string, known []string) (hint, meant string) {
	if s := suggest.Closest(key, known, 2); s != "" {
		return fmt.Sprintf("did you mean %q?", s), s
	}
	return "known fields are " + strings.Join(known, ", "), ""
}
