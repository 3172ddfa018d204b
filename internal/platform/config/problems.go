package config

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// problem is one configuration mistake. Key is as users write it
// (ingest.batch_size, ingest.routes[0].template) or, for a variable that
// maps to no key, the variable's name.
type problem struct{ key, msg string }

func (p problem) Error() string { return p.key + ": " + p.msg }

// problems collects every mistake so that the operator fixes them in one
// round, not one per start.
type problems []problem

func (ps *problems) add(key, format string, a ...any) {
	*ps = append(*ps, problem{key, fmt.Sprintf(format, a...)})
}

// addErr adds each error of a joined err under key.
func (ps *problems) addErr(key string, err error) {
	for _, e := range flatten(err) {
		ps.add(key, "%v", e)
	}
}

// err returns the problems sorted by key, one per line, or nil.
func (ps problems) err() error {
	sorted := slices.Clone(ps)
	slices.SortStableFunc(sorted, func(a, b problem) int { return cmp.Compare(a.key, b.key) })
	errs := make([]error, len(sorted))
	for i, p := range sorted {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// flatten lists the leaves of a tree of joined errors.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// decodeValue decodes raw (from the file, a variable, a flag or the
// defaults) into a new value of type t, as viper's UnmarshalExact would:
// weakly typed ("20" is an int), durations from strings, comma-separated
// lists, and unknown fields of structured keys are errors.
func decodeValue(t reflect.Type, raw any) (reflect.Value, error) {
	out := reflect.New(t)
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out.Interface(),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			commaList,
		),
	})
	if err != nil {
		return reflect.Value{}, err
	}
	if err := d.Decode(raw); err != nil {
		return reflect.Value{}, err
	}
	return out.Elem(), nil
}

// decodeProblems explains why raw does not decode as key l: the bad value
// and the form expected, in the user's words rather than mapstructure's.
func decodeProblems(ps *problems, l leaf, raw any, err error) {
	if l.fileOnly {
		structuredProblems(ps, l, err)
		return
	}
	v := show(raw)
	if l.secret {
		v = "the value (a secret, not shown)"
	}
	switch {
	case l.typ == durationType:
		ps.add(l.key, "%s is not a duration (use a number with a unit: 30s, 5m, 1h)", v)
	case l.typ.Kind() == reflect.Int:
		ps.add(l.key, "%s is not a whole number", v)
	case l.typ.Kind() == reflect.Float64:
		ps.add(l.key, "%s is not a number", v)
	case l.typ.Kind() == reflect.Bool:
		ps.add(l.key, "%s is not true or false", v)
	case l.typ.Kind() == reflect.Slice:
		ps.add(l.key, "%s is not a list of strings (in the file [a, b]; in a variable or flag a,b)", v)
	default:
		ps.add(l.key, "%s is not a %s", v, typeName(l.typ))
	}
}

// structuredProblems turns mapstructure's errors about a file-only key
// into one problem per bad element, named by its path under the key.
func structuredProblems(ps *problems, l leaf, err error) {
	var des []*mapstructure.DecodeError
	// errors.As stops at the first match, so walk the whole tree by hand;
	// evidence.IntegrityErrors walks its own error type the same way.
	var walk func(error)
	walk = func(e error) {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) && e == error(de) {
			des = append(des, de)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	if len(des) == 0 {
		ps.add(l.key, "%v; expected a %s", err, typeName(l.typ))
		return
	}
	elem := l.typ
	for elem.Kind() == reflect.Map || elem.Kind() == reflect.Slice {
		elem = elem.Elem()
	}
	for _, de := range des {
		key := l.key
		switch name := de.Name(); {
		case name == "":
		case strings.HasPrefix(name, "["):
			key += name
		default:
			key += "." + name
		}
		msg, suffix := "", "; "+l.key+" is a "+typeName(l.typ)
		var ut *mapstructure.UnconvertibleTypeError
		var pe *mapstructure.ParseError
		inner := de.Unwrap()
		switch {
		case strings.HasPrefix(inner.Error(), "has invalid keys: ") && elem.Kind() == reflect.Struct:
			var known []string
			for i := range elem.NumField() {
				known = append(known, elem.Field(i).Tag.Get("mapstructure"))
			}
			var parts []string
			for _, k := range strings.Split(strings.TrimPrefix(inner.Error(), "has invalid keys: "), ", ") {
				part := "unknown field " + k
				if s := nearest(k, known, ""); s != "" {
					part += "; did you mean " + s + "?"
				}
				parts = append(parts, part)
			}
			msg, suffix = strings.Join(parts, "; ")+" (fields: "+strings.Join(known, ", ")+")", ""
		case errors.As(inner, &ut):
			msg = fmt.Sprintf("%s is not a %s", show(ut.Value), typeName(ut.Expected.Type()))
		case errors.As(inner, &pe):
			msg = fmt.Sprintf("%s is not a %s", show(pe.Value), typeName(pe.Expected.Type()))
		default:
			msg = inner.Error()
		}
		ps.add(key, "%s%s", msg, suffix)
	}
}

// show renders a value from the file, a variable or a flag for an error
// message: strings quoted, anything else as compact YAML, cut short.
func show(raw any) string {
	var s string
	if str, ok := raw.(string); ok {
		s = fmt.Sprintf("%q", str)
	} else {
		var n yaml.Node
		if err := n.Encode(raw); err != nil {
			s = fmt.Sprint(raw)
		} else {
			s = inline(&n)
		}
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// baselineKeys maps the baseline.Params fields set from detector.* keys to
// those keys; baseline names its fields in errors, operators know keys.
var baselineKeys = map[string]string{
	"HalfLife":            "detector.half_life",
	"LongHalfLife":        "detector.long_half_life",
	"Warmup":              "detector.warmup",
	"AlertScore":          "detector.alert_score",
	"AnomalousWeight":     "detector.anomalous_weight",
	"ExcessThreshold":     "detector.excess_threshold",
	"ExcessRatio":         "detector.excess_ratio",
	"SlowExcessRatio":     "detector.slow_excess_ratio",
	"SlowExcessThreshold": "detector.slow_excess_threshold",
	"ExcessGuardWeight":   "detector.excess_guard_weight",
	"ScoreSigmas":         "detector.score_sigmas",
	"ScoreHalfLife":       "detector.score_half_life",
	"ScoreWarmup":         "detector.score_warmup",
}

var baselineField = regexp.MustCompile(`\b(HalfLife|LongHalfLife|Warmup|AlertScore|AnomalousWeight|ExcessThreshold|ExcessRatio|SlowExcessRatio|SlowExcessThreshold|ExcessGuardWeight|ScoreSigmas|ScoreHalfLife|ScoreWarmup)\b`)

// baselineProblems validates p, the baseline parameters built from the
// detector.* keys, and reports each problem under its key.
func baselineProblems(ps *problems, p baseline.Params) {
	errs := flatten(p.Validate())
	alertScoreBad := slices.ContainsFunc(errs, func(e error) bool { return strings.HasPrefix(e.Error(), "AlertScore: ") })
	for _, e := range errs {
		field, msg, _ := strings.Cut(e.Error(), ": ")
		key, ok := baselineKeys[field]
		switch {
		case ok:
			ps.add(key, "%s", baselineField.ReplaceAllStringFunc(msg, func(f string) string { return baselineKeys[f] }))
		case field == "MediumScore" && strings.Contains(msg, "AlertScore"):
			// The medium-severity score is fixed; only detector.alert_score
			// can cross it, and it was reported already if out of range.
			if !alertScoreBad {
				ps.add("detector.alert_score", "must be at most %g, the medium-severity score, got %g", p.MediumScore, p.AlertScore)
			}
		default:
			// A parameter no key sets: the package defaults are broken.
			ps.add("detector", "baseline parameter %v", e)
		}
	}
}
