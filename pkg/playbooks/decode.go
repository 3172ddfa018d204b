package playbooks

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/internal/strictyaml"
)

// The files are decoded by walking yaml.Node trees against the struct
// tags rather than with yaml.Decoder.KnownFields: yaml's own strict mode
// stops at the first problem and names Go types, where an operator needs
// every problem at once, each with the file, line, playbook and field
// (pkg/inventory does the same for the registry; pkg/internal/strictyaml
// holds what the two share).

// Limits on one file. maxNodes bounds the work aliases can cause beyond
// one node per input byte (a billion laughs is an error, not an OOM).
const (
	maxNodes     = 1 << 16
	maxPlaybooks = 1000
	maxSteps     = 32
	maxErrors    = 100
)

var durationType = reflect.TypeFor[time.Duration]()

// defaulter is implemented by step parameters that have defaults: they
// are set before decoding, so a field left out keeps its default and one
// given explicitly (even as 0) wins.
type defaulter interface{ setDefaults() }

// Parse decodes a playbook file (YAML, or JSON, which is YAML) and
// validates it. name is the file name errors start with and ends up in
// each Playbook's File. Decoding is strict: unknown fields (with a
// did-you-mean hint), fields given twice, wrong types, an empty file and
// more than one YAML document are errors. Every problem is reported at
// once, joined, each a *FieldError naming file, line, playbook and field.
// On error the Set is empty.
func Parse(name string, data []byte) (Set, error) {
	d := &decoder{file: name, budget: maxNodes + len(data), pb: -1}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		// JSON: YAML refuses tabs as indentation, and a tab outside a JSON
		// string can only be white space (inside one it must be escaped).
		data = bytes.ReplaceAll(data, []byte{'\t'}, []byte{' '})
	}
	set := d.file1(data)
	if len(d.errs) == 0 && d.dropped == 0 {
		if err := set.Validate(); err != nil {
			return Set{}, err
		}
		return set, nil
	}
	// Semantic checks still run, so one pass shows everything, but not on
	// fields that failed to decode: their zero values would only repeat
	// the problem.
	errs := d.errs
	if d.budget <= 0 {
		// What was decoded is cut short at random; checking it would only
		// add noise to the one problem that matters.
		return Set{}, errors.Join(errs...)
	}
	if err := set.Validate(); err != nil {
		for _, e := range unjoin(err) {
			var fe *FieldError
			if errors.As(e, &fe) && !d.covered(fe) {
				errs = append(errs, fe)
			}
		}
	}
	// In file order: by playbook, then line.
	slices.SortStableFunc(errs, func(a, b error) int {
		var x, y *FieldError
		if !errors.As(a, &x) || !errors.As(b, &y) {
			return 0
		}
		return cmp.Or(cmp.Compare(x.Index, y.Index), cmp.Compare(x.Line, y.Line))
	})
	if d.dropped > 0 {
		errs = append(errs, fmt.Errorf("%s: %d more problems not shown", name, d.dropped))
	}
	return Set{}, errors.Join(errs...)
}

// decoder is one Parse in progress.
type decoder struct {
	file    string
	budget  int
	errs    []error
	dropped int
	// pb is the index of the playbook being decoded (-1 outside one),
	// name its name once known, lines its field lines.
	pb    int
	name  string
	lines map[string]int
	// bad holds, per playbook index, the field paths that failed.
	bad map[int][]string
}

func (d *decoder) file1(data []byte) Set {
	root, err := strictyaml.Decode(data)
	switch {
	case errors.Is(err, io.EOF):
		d.fail(nil, "", "empty file; want a mapping with key \"playbooks\"")
		return Set{}
	case errors.Is(err, strictyaml.ErrExtraDocument):
		d.fail(nil, "", "more than one YAML document (a second '---'); keep one per file")
		return Set{}
	case err != nil:
		// "yaml: line 3: mapping values are not allowed in this context"
		fe := &FieldError{File: d.file, Index: -1, Msg: err.Error()}
		if rest, ok := strings.CutPrefix(fe.Msg, "yaml: line "); ok {
			if n, msg, ok := strings.Cut(rest, ": "); ok {
				if l, err := strconv.Atoi(n); err == nil {
					fe.Line, fe.Msg = l, "YAML syntax: "+msg
				}
			}
		}
		d.errs = append(d.errs, fe)
		return Set{}
	}
	top := d.resolve(root, "")
	if top == nil {
		return Set{}
	}
	if top.Kind != yaml.MappingNode {
		d.fail(top, "", "want a mapping with key \"playbooks\", not %s", strictyaml.KindName(top))
		return Set{}
	}
	var list *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		k := d.resolve(top.Content[i], "")
		switch {
		case k == nil:
		case k.Kind != yaml.ScalarNode || k.Value != "playbooks":
			d.unknown(k, "", []string{"playbooks"})
		case list != nil:
			d.fail(k, "playbooks", "given twice")
		default:
			list = d.resolve(top.Content[i+1], "playbooks")
		}
	}
	switch {
	case list == nil:
		if len(d.errs) == 0 {
			d.fail(top, "playbooks", "missing; want a list of playbooks")
		}
		return Set{}
	case strictyaml.IsNull(list):
		return Set{}
	case list.Kind != yaml.SequenceNode:
		d.fail(list, "playbooks", "want a list of playbooks, not %s", strictyaml.KindName(list))
		return Set{}
	case len(list.Content) > maxPlaybooks:
		d.fail(list, "playbooks", "%d playbooks; at most %d per file", len(list.Content), maxPlaybooks)
		return Set{}
	}
	set := Set{Playbooks: make([]Playbook, 0, len(list.Content))}
	for i, n := range list.Content {
		d.pb, d.name, d.lines = i, "", map[string]int{}
		n = d.resolve(n, "")
		if n == nil {
			continue
		}
		// Name the playbook in every error, even those before its name.
		if n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if k := n.Content[j]; k.Kind == yaml.ScalarNode && k.Value == "name" {
					if v := n.Content[j+1]; v.Kind == yaml.ScalarNode {
						d.name = v.Value
					}
				}
			}
		}
		pb := Playbook{File: d.file}
		d.value(n, reflect.ValueOf(&pb).Elem(), "")
		pb.src = source{index: i, lines: d.lines}
		set.Playbooks = append(set.Playbooks, pb)
	}
	d.pb = -1
	return set
}

// fail records a problem with field path (relative to the current
// playbook) at node n, which may be nil.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if d.pb >= 0 {
		if d.bad == nil {
			d.bad = map[int][]string{}
		}
		d.bad[d.pb] = append(d.bad[d.pb], path)
	}
	if len(d.errs) >= maxErrors {
		d.dropped++
		return
	}
	fe := &FieldError{File: d.file, Index: d.pb, Playbook: d.name, Field: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		fe.Line = n.Line
	}
	d.errs = append(d.errs, fe)
}

// covered reports whether a validation error is about a field that
// failed to decode (or one inside or around it).
func (d *decoder) covered(fe *FieldError) bool {
	for _, b := range d.bad[fe.Index] {
		if within(fe.Field, b) || within(b, fe.Field) {
			return true
		}
	}
	return false
}

// within reports whether field path p is q or inside it.
func within(p, q string) bool {
	if q == "" || p == q {
		return true
	}
	return strings.HasPrefix(p, q) && (p[len(q)] == '.' || p[len(q)] == '[')
}

// resolve follows document and alias nodes to their content and charges
// the node to the budget; nil once the budget is spent.
func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	n, ok := strictyaml.Resolve(n, &d.budget)
	if !ok {
		if n != nil {
			d.fail(n, path, "aliases expand to more than %d nodes; write the values out", maxNodes)
		}
		return nil
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value decodes n into v, a field at path. Null leaves the zero value.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n = d.resolve(n, path); n == nil {
		return
	}
	if n.Line > 0 {
		d.lines[path] = n.Line
	}
	if strictyaml.IsNull(n) {
		return
	}
	t := v.Type()
	scalar := func(what string) bool {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want %s, not %s", what, strictyaml.KindName(n))
			return false
		}
		return true
	}
	// One case per kind of scalar, alike in shape on purpose: each has its
	// own YAML tags, setter and error text, which a shared helper would only
	// take as parameters.
	switch {
	case t == durationType:
		if !scalar("a duration like 30s, 15m or 1h") {
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n, path, "want a duration like 30s, 15m or 1h, got %.40q", n.Value)
			return
		}
		v.SetInt(int64(dur))
	case t.Kind() == reflect.String:
		if scalar("a string") {
			v.SetString(n.Value)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if !scalar("true or false") {
			return
		}
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "want true or false, got %.40q", n.Value)
			return
		}
		v.SetBool(b)
	case t.Kind() == reflect.Int:
		var i int
		if !scalar("a whole number") {
			return
		}
		if n.Tag != "!!int" || n.Decode(&i) != nil {
			d.fail(n, path, "want a whole number, got %.40q", n.Value)
			return
		}
		v.SetInt(int64(i))
	case t.Kind() == reflect.Float64:
		var f float64
		if !scalar("a number") {
			return
		}
		if (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&f) != nil {
			d.fail(n, path, "want a number, got %.40q", n.Value)
			return
		}
		v.SetFloat(f)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, not %s", strictyaml.KindName(n))
			return
		}
		if len(n.Content) == 0 {
			return // an empty list is no list: nil, so it round-trips
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case t.Kind() == reflect.Map: // map[string]string
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping of strings to strings, not %s", strictyaml.KindName(n))
			return
		}
		if len(n.Content) == 0 {
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := d.resolve(n.Content[i], path), d.resolve(n.Content[i+1], path)
			if k == nil || c == nil {
				continue
			}
			if k.Kind != yaml.ScalarNode || k.Tag == "!!null" {
				d.fail(k, path, "a key is %s; want a string", strictyaml.KindName(k))
				continue
			}
			p := path + "." + k.Value
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.fail(k, p, "given twice")
				continue
			}
			if c.Kind != yaml.ScalarNode {
				d.fail(c, p, "want a string, not %s", strictyaml.KindName(c))
				continue
			}
			val := c.Value
			if c.Tag == "!!null" {
				val = ""
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(val))
		}
		v.Set(m)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		p := reflect.New(t.Elem())
		if df, ok := p.Interface().(defaulter); ok {
			df.setDefaults()
		}
		if d.fields(n, p.Elem(), path) {
			v.Set(p)
		}
	case t.Kind() == reflect.Struct:
		d.fields(n, v, path)
	default:
		panic("playbooks: no decoder for " + t.String()) // a new field type; tests catch it
	}
}

// fields decodes mapping n into struct v; false when n is no mapping.
func (d *decoder) fields(n *yaml.Node, v reflect.Value, path string) bool {
	fs := fieldsOf(v.Type())
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping with keys %s, not %s", strings.Join(fs.names, ", "), strictyaml.KindName(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i], path)
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "a key is %s; keys are field names", strictyaml.KindName(k))
			continue
		}
		f, ok := fs.byName[k.Value]
		switch {
		case !ok:
			d.unknown(k, path, fs.names)
			continue
		case seen[k.Value]:
			d.fail(k, join(path, k.Value), "given twice")
			continue
		}
		seen[k.Value] = true
		fv := v.Field(f.index)
		c := n.Content[i+1]
		if f.empty && strictyaml.IsNull(c) {
			// `quarantine:` with nothing after it is a step with default
			// parameters, as `quarantine: {}` is.
			p := reflect.New(fv.Type().Elem())
			if df, ok := p.Interface().(defaulter); ok {
				df.setDefaults()
			}
			fv.Set(p)
			d.lines[join(path, k.Value)] = k.Line
			continue
		}
		d.value(c, fv, join(path, k.Value))
	}
	return true
}

// unknown records key k as an unknown field of path, with a hint. The
// error names path, but what it marks as failed is the field meant (the
// suggestion), so that checks of the other fields still run and "channel:
// required" does not follow "unknown field chanel".
func (d *decoder) unknown(k *yaml.Node, path string, known []string) {
	hint, meant := strictyaml.Hint(k.Value, known)
	if meant == "" {
		meant = "\x00" // no real field
	}
	d.fail(k, path, "unknown field %.40q; %s", k.Value, hint)
	if d.pb >= 0 {
		bad := d.bad[d.pb]
		bad[len(bad)-1] = join(path, meant)
	}
}

// structFields describes the yaml fields of a struct type.
type structFields struct {
	names  []string
	byName map[string]fieldInfo
	list   []fieldInfo
}

type fieldInfo struct {
	name  string
	index int
	// empty: null means "present with defaults" (step kinds).
	empty bool
}

// fieldTable holds the fields of every struct type in a Set, built once:
// looking tags up per node made decoding alias-heavy files slow. It is
// never written after init.
var fieldTable = func() map[reflect.Type]structFields {
	m := map[reflect.Type]structFields{}
	for _, v := range []any{Playbook{}, Trigger{}, Step{}, Notify{}, Revoke{}, Throttle{}, Quarantine{}, Snapshot{}, Webhook{}, Approve{}} {
		t := reflect.TypeOf(v)
		m[t] = readFields(t)
	}
	return m
}()

func fieldsOf(t reflect.Type) structFields {
	fs, ok := fieldTable[t]
	if !ok {
		panic("playbooks: add " + t.String() + " to fieldTable") // a new type; tests catch it
	}
	return fs
}

func readFields(t reflect.Type) structFields {
	fs := structFields{byName: map[string]fieldInfo{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		if tag == "" || tag == "-" || !sf.IsExported() {
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		f := fieldInfo{name: name, index: i, empty: opt == "empty"}
		fs.names = append(fs.names, name)
		fs.byName[name] = f
		fs.list = append(fs.list, f)
	}
	return fs
}

// Marshal writes s as YAML that Parse reads back to the same Set (File
// and line numbers aside). Fields at their zero value are left out unless
// their default is not zero, so every value survives the round trip.
func Marshal(s Set) ([]byte, error) {
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for i := range s.Playbooks {
		list.Content = append(list.Content, encode(reflect.ValueOf(&s.Playbooks[i]).Elem()))
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{scalarNode("playbooks"), list}}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("encode playbooks: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode playbooks: %w", err)
	}
	return b.Bytes(), nil
}

func scalarNode(v any) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		panic(err) // strings, bools and numbers always encode
	}
	return &n
}

// encode returns the node for v (a value of one of the types value
// decodes).
func encode(v reflect.Value) *yaml.Node {
	t := v.Type()
	switch {
	case t == durationType:
		return scalarNode(fmtDuration(time.Duration(v.Int())))
	case t.Kind() == reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i := range v.Len() {
			n.Content = append(n.Content, encode(v.Index(i)))
		}
		return n
	case t.Kind() == reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := v.MapKeys()
		strs := make([]string, len(keys))
		for i, k := range keys {
			strs[i] = k.String()
		}
		slices.Sort(strs)
		for _, k := range strs {
			n.Content = append(n.Content, scalarNode(k), scalarNode(v.MapIndex(reflect.ValueOf(k)).String()))
		}
		return n
	case t.Kind() == reflect.Pointer:
		return encode(v.Elem())
	case t.Kind() == reflect.Struct:
		var def reflect.Value
		if df, ok := reflect.New(t).Interface().(defaulter); ok {
			df.setDefaults()
			def = reflect.ValueOf(df).Elem()
		}
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if len(fieldsOf(t).list) <= 2 { // {adapter: kong}, {before: 15m, after: 5m}
			n.Style = yaml.FlowStyle
		}
		for _, f := range fieldsOf(t).list {
			fv := v.Field(f.index)
			if fv.IsZero() && (!def.IsValid() || def.Field(f.index).IsZero()) {
				continue
			}
			if (fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && fv.Len() == 0 {
				continue
			}
			n.Content = append(n.Content, scalarNode(f.name), encode(fv))
		}
		return n
	}
	return scalarNode(v.Interface())
}

// fmtDuration writes d as time.Duration does, without the zero minutes
// and seconds it appends: 1h, 90m → 1h30m, 15m.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// unjoin returns the errors err joins, or err alone.
func unjoin(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}
