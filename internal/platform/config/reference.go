package config

import (
	"bufio"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/suggest"
)

// KeyDoc documents one configuration key.
type KeyDoc struct {
	Key      string // as users write it: "ingest.batch_size"
	Env      string // "AGENTWATCH_INGEST_BATCH_SIZE" ("" for file-only keys)
	Type     string // "duration", "int", "float", "bool", "string", "list of strings", "map …", "list of …" (file only)
	Default  string // rendered as a user would write it in YAML
	Doc      string // one or two sentences: meaning, and the expected form/range
	FileOnly bool   // structured keys settable only in the file
	Secret   bool   // masked by config show
	// FileKey is the key naming a file that holds a secret's value
	// ("clickhouse.password_file"); "" for keys that are not secret
	// scalars.
	FileKey string
}

// leaf is one configuration key: a field of Config that is not itself a
// section (a struct of keys).
type leaf struct {
	key      string
	index    []int // into Config, for reflect.Value.FieldByIndex
	typ      reflect.Type
	doc      string
	fileOnly bool
	secret   bool
}

// FileSuffix turns a secret key into the key of the file holding it:
// clickhouse.password is also clickhouse.password_file, the
// Kubernetes-secret convention of mounting each secret as a file.
const FileSuffix = "_file"

// fileKey is the key naming the file that holds l's value, or "" when l
// is no secret scalar (secrets inside file-only structures have none).
func (l leaf) fileKey() string {
	if !l.secret || l.fileOnly {
		return ""
	}
	return l.key + FileSuffix
}

var durationType = reflect.TypeFor[time.Duration]()

// leaves walks Config by its mapstructure tags once; the order is the
// structs' (which WriteEffective keeps), not sorted.
var leaves = sync.OnceValue(func() []leaf {
	var out []leaf
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("mapstructure")
			if name == "" || name == "-" {
				continue
			}
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+name+".", idx)
				continue
			}
			out = append(out, leaf{
				key:      prefix + name,
				index:    idx,
				typ:      f.Type,
				doc:      f.Tag.Get("doc"),
				fileOnly: structured(f.Type),
				secret:   f.Tag.Get("secret") == "true" || holdsSecret(f.Type),
			})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
})

// structured types (maps, lists of anything but strings) cannot be
// written as one environment variable or flag: they are set in the file.
func structured(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Map:
		return true
	case reflect.Slice:
		return t.Elem().Kind() != reflect.String
	}
	return false
}

// holdsSecret reports whether a structured type has a field tagged secret.
func holdsSecret(t reflect.Type) bool {
	for t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("secret") == "true" || holdsSecret(f.Type) {
			return true
		}
	}
	return false
}

// sections are the struct types holding keys (Config, Kafka, Slack, …), as
// opposed to the entries of structured keys (IdentityRule, APIToken, …).
var sections = func() map[reflect.Type]bool {
	m := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		m[t] = true
		for i := range t.NumField() {
			if f := t.Field(i); f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	return m
}()

// envName is the AGENTWATCH_* variable of key.
func envName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// typeName describes t as the reference shows it.
func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Float64:
		return "float"
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "list of " + plural(t.Elem())
	case reflect.Map:
		return "map of " + plural(t.Elem())
	case reflect.Struct:
		var fs []string
		for i := range t.NumField() {
			fs = append(fs, t.Field(i).Tag.Get("mapstructure"))
		}
		return "{" + strings.Join(fs, ", ") + "}"
	}
	return t.String()
}

func plural(t reflect.Type) string {
	switch n := typeName(t); {
	case t.Kind() == reflect.Struct:
		return n
	case t.Kind() == reflect.Map || t.Kind() == reflect.Slice:
		return strings.Replace(n, " of", "s of", 1)
	default:
		return n + "s"
	}
}

// Reference documents every key, sorted by key. It is generated from the
// Config structs' tags and the defaults, so it cannot drift from Load.
// Each call returns a new slice; it is safe for concurrent use.
func Reference() []KeyDoc {
	def, err := defaultConfig()
	if err != nil {
		panic(err) // TestDefaultsAreValidAndEmbedded keeps the defaults decodable
	}
	rv := reflect.ValueOf(def)
	var out []KeyDoc
	for _, l := range leaves() {
		d := KeyDoc{
			Key:      l.key,
			Type:     typeName(l.typ),
			Default:  inline(valueNode(rv.FieldByIndex(l.index), false)),
			Doc:      l.doc,
			FileOnly: l.fileOnly,
			Secret:   l.secret,
		}
		if !l.fileOnly {
			d.Env = envName(l.key)
		}
		d.FileKey = l.fileKey()
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b KeyDoc) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Keys returns every configuration key, sorted.
func Keys() []string {
	var ks []string
	for _, l := range leaves() {
		ks = append(ks, l.key)
	}
	slices.Sort(ks)
	return ks
}

// SuggestKey returns the flag-settable key (not file-only) that s, an
// unknown --flag or key name, most likely meant, or "". Leading dashes
// and case are ignored. It is what the CLI prints as "did you mean".
func SuggestKey(s string) string {
	var ks []string
	for _, l := range leaves() {
		if !l.fileOnly {
			ks = append(ks, l.key)
		}
	}
	return nearest(strings.ToLower(strings.TrimLeft(s, "-")), ks, ".")
}

// nearest finds the candidate within a few edits of s or, failing that
// and with a sep, the only candidate with s's last sep-separated part: the
// right name in the wrong section (ingest.window for detector.window).
func nearest(s string, cands []string, sep string) string {
	max := 2
	if len(s) > 12 {
		max = 3
	}
	if k := suggest.Best(s, cands, max); k != "" {
		return k
	}
	if sep == "" {
		return ""
	}
	last := s[strings.LastIndex(s, sep)+1:]
	hit := ""
	for _, c := range cands {
		if c[strings.LastIndex(c, sep)+1:] == last {
			if hit != "" {
				return "" // ambiguous: say nothing rather than guess
			}
			hit = c
		}
	}
	return hit
}

// referenceIntro heads the Markdown page; the test that keeps
// docs/configuration.md current compares the whole page.
const referenceIntro = `# Configuration reference

<!-- Generated by ` + "`agentwatch config reference --markdown`" + ` from internal/platform/config; do not edit.
     Regenerate with: go test ./internal/platform/config -run TestConfigurationDoc -update -->

Every agentwatch command reads one configuration: a YAML file (` + "`--config FILE`" + ` or
` + "`AGENTWATCH_CONFIG_FILE`" + `), then ` + "`AGENTWATCH_*`" + ` environment variables, then ` + "`--KEY`" + `
flags, each overriding the one before. A key such as ` + "`ingest.batch_size`" + ` is
written nested in the file (` + "`ingest: {batch_size: 5000}`" + `), as
` + "`AGENTWATCH_INGEST_BATCH_SIZE=5000`" + ` in the environment and as ` + "`--ingest.batch_size=5000`" + `
on the command line. Lists are comma-separated in variables and flags. File-only keys
are structured and can only be set in the file. Durations take a unit (` + "`30s`" + `, ` + "`5m`" + `,
` + "`1h`" + `). Unknown keys and bad values stop the command with exit code 2, every
problem listed at once. ` + "`agentwatch config show`" + ` prints the effective configuration,
secrets masked.

Secrets (the keys marked secret below) are never logged. Each secret key also has a
` + "`_file`" + ` form, the Kubernetes-secret convention: ` + "`clickhouse.password_file`" + ` in the file,
` + "`AGENTWATCH_CLICKHOUSE_PASSWORD_FILE`" + ` in the environment or ` + "`--clickhouse.password_file`" + `
names a file whose contents, without the trailing newline, are the value. Setting a
secret and its ` + "`_file`" + ` both (through any of the three) is an error, and so is a file that
cannot be read or is empty. Prefer the file or the variable to writing a secret in the
configuration file.
`

// WriteReference writes the reference of every key: a plain-text listing
// for the terminal, or with markdown the page docs/configuration.md. It
// is safe for concurrent use.
func WriteReference(w io.Writer, markdown bool) error {
	bw := bufio.NewWriter(w)
	if markdown {
		writeMarkdown(bw)
	} else {
		writeText(bw)
	}
	return bw.Flush()
}

func writeText(w *bufio.Writer) {
	for _, d := range Reference() {
		var attrs []string
		attrs = append(attrs, d.Type, "default "+d.Default)
		if d.FileOnly {
			attrs = append(attrs, "file only")
		} else {
			attrs = append(attrs, "env "+d.Env)
		}
		if d.Secret {
			attrs = append(attrs, "secret")
		}
		if d.FileKey != "" {
			attrs = append(attrs, "also "+d.FileKey)
		}
		fmt.Fprintf(w, "%s (%s)\n", d.Key, strings.Join(attrs, ", "))
		for _, line := range wrap(d.Doc, 72) {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

func writeMarkdown(w *bufio.Writer) {
	w.WriteString(referenceIntro)
	section := ""
	for _, d := range Reference() {
		if s, _, _ := strings.Cut(d.Key, "."); s != section {
			section = s
			fmt.Fprintf(w, "\n## %s\n\n| Key | Type | Default | Meaning |\n|---|---|---|---|\n", s)
		}
		key := "`" + d.Key + "`"
		if d.Env != "" {
			key += "<br>`" + d.Env + "`"
		}
		typ := d.Type
		if d.FileOnly {
			typ += " (file only)"
		}
		doc := d.Doc
		if d.Secret {
			doc += " Secret: agentwatch config show masks it."
		}
		if d.FileKey != "" {
			doc += " Also `" + d.FileKey + "` (`" + envName(d.FileKey) + "`): a file holding it."
		}
		fmt.Fprintf(w, "| %s | %s | `%s` | %s |\n", key, mdEscape(typ), d.Default, mdEscape(doc))
	}
}

// mdEscape keeps text literal in a Markdown table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "*", `\*`, "<", "&lt;", ">", "&gt;", "[", `\[`, "]", `\]`).Replace(s)
}

// wrap breaks s into lines of at most width runes where it can.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// SecretMask is what WriteEffective writes for a secret that is set.
const SecretMask = "<secret>"

// WriteEffective writes c as a YAML config file that Load reads back to
// c, with every secret that is set replaced by SecretMask (and so no
// longer the same). It is safe for concurrent use.
func WriteEffective(w io.Writer, c Config) error {
	n := valueNode(reflect.ValueOf(c), false)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return fmt.Errorf("write effective config: %w", err)
	}
	return enc.Close()
}

// valueNode renders v as YAML: sections and structured keys in block
// style, lists of scalars in flow style ([a, b]), durations as 1h30m.
// With secret, every string value that is set becomes SecretMask.
func valueNode(v reflect.Value, secret bool) *yaml.Node {
	scalar := func(tag, val string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: val}
	}
	if v.Type() == durationType {
		return scalar("!!str", formatDuration(time.Duration(v.Int())))
	}
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		if secret && s != "" {
			s = SecretMask
		}
		n := scalar("!!str", s)
		// Quote what YAML would read as something else (true, 10, ~)
		// or not at all (#channel, "").
		if !isPlainString(s) {
			n.Style = yaml.DoubleQuotedStyle
		}
		return n
	// Numbers and bools go untagged: a float field written 600 reads back
	// as 600, and "!!float 600" is not what a user writes.
	case reflect.Bool:
		return scalar("", strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int64:
		return scalar("", strconv.FormatInt(v.Int(), 10))
	case reflect.Float64:
		return scalar("", strconv.FormatFloat(v.Float(), 'f', -1, 64))
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if k := v.Type().Elem().Kind(); k != reflect.Struct && k != reflect.Map {
			n.Style = yaml.FlowStyle
		}
		for i := range v.Len() {
			n.Content = append(n.Content, valueNode(v.Index(i), secret))
		}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			n.Content = append(n.Content, valueNode(k, false), valueNode(v.MapIndex(k), secret))
		}
		if v.Len() == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name := f.Tag.Get("mapstructure")
			if name == "" || name == "-" {
				continue
			}
			fv := v.Field(i)
			if (fv.Kind() == reflect.Map || fv.Kind() == reflect.Slice) && fv.IsNil() && !sections[v.Type()] {
				continue // absent in an entry (a webhook's header): leave it out, as the user did
			}
			n.Content = append(n.Content, scalar("!!str", name), valueNode(fv, secret || f.Tag.Get("secret") == "true"))
		}
		return n
	}
	return scalar("!!str", fmt.Sprint(v.Interface()))
}

// isPlainString reports whether YAML reads s, unquoted, back as the
// string s (not a number, a bool, null, a comment or a syntax error).
func isPlainString(s string) bool {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte("v: "+s), &m); err != nil {
		return false
	}
	str, ok := m["v"].(string)
	return ok && str == s
}

// inline renders n on one line, as a default in the reference.
func inline(n *yaml.Node) string {
	setFlow(n)
	b, err := yaml.Marshal(n)
	if err != nil {
		return fmt.Sprint(err)
	}
	return strings.TrimSpace(string(b))
}

func setFlow(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode {
		n.Style = yaml.FlowStyle
	}
	for _, c := range n.Content {
		setFlow(c)
	}
}

// formatDuration writes d as a user would: 1h, 1h30m, 500ms, not 1h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
