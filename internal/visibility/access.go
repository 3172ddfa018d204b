package visibility

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/inventory"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// Access answers who called the routes req selects within its span: the
// routes of the route inventory and those called in the span that carry
// req.Tag and match req.Template (a glob: "*" is one segment, "**" any
// number; parameters compare in normalised form, so {customerId} matches
// {id}). With neither, every route. A tag or template that selects no
// route gives no rows, not every route.
func (s *Service) Access(ctx context.Context, who audit.Actor, req AccessRequest) (_ AccessAnswer, err error) {
	defer s.observe("access", time.Now(), &err)
	ans := AccessAnswer{Request: req, Routes: []string{}, Rows: []AccessRow{}}
	q := question("access", "tag", quoted(req.Tag), "template", quoted(req.Template), "agent", quoted(req.AgentID), "span", spanArg(req.Span))
	if err := s.ask(ctx, who, q, req.AgentID, req.validate()); err != nil {
		return ans, err
	}
	v := s.view()
	rs, err := s.resolve(ctx, v, req)
	if err != nil {
		return ans, fmt.Errorf("access: %w", err)
	}
	if rs != nil {
		ans.Routes = rs
	}
	if (req.Tag != "" || req.Template != "") && len(rs) == 0 {
		return ans, nil
	}
	rows, err := s.src.Access(ctx, AccessQuery{Span: req.Span, Routes: rs, AgentID: req.AgentID, Samples: req.Samples})
	if err != nil {
		return ans, fmt.Errorf("access: %w", err)
	}
	if rows != nil {
		ans.Rows = rows
	}
	return ans, nil
}

func (req AccessRequest) validate() error {
	if err := req.Span.Validate(); err != nil {
		return err
	}
	if req.Tag != "" {
		if err := ValidateTag(req.Tag); err != nil {
			return err
		}
	}
	if req.Template != "" {
		if err := ValidateGlob(req.Template); err != nil {
			return err
		}
	}
	if req.Samples < 0 || req.Samples > MaxSamples {
		return invalidf("samples: %d; want 0 (the default, %d) to %d", req.Samples, DefaultSamples, MaxSamples)
	}
	return nil
}

// resolve lists the routes req selects, sorted; nil when it selects
// every route.
func (s *Service) resolve(ctx context.Context, v view, req AccessRequest) ([]string, error) {
	if req.Tag == "" && req.Template == "" {
		return nil, nil
	}
	pairs, err := s.src.AgentRoutes(ctx, req.Span, req.AgentID, "")
	if err != nil {
		return nil, err
	}
	// The routes called, under the spelling the events carry, and the
	// inventory's routes nobody called, under the inventory's: one
	// spelling per route, so the answer lists each route once.
	var cands []string
	called := map[string]struct{}{}
	for _, p := range pairs {
		cands = append(cands, p.Route)
		called[inventory.NormalizeTemplate(p.Route)] = struct{}{}
	}
	for _, t := range v.inv.Templates() {
		if _, ok := called[inventory.NormalizeTemplate(t)]; !ok {
			cands = append(cands, t)
		}
	}
	slices.Sort(cands)
	cands = slices.Compact(cands)
	out := []string{}
	for _, r := range cands {
		if req.Tag != "" {
			ir, ok := v.inv.Lookup(r)
			if !ok || !slices.Contains(ir.Tags, req.Tag) {
				continue
			}
		}
		if req.Template != "" && !MatchGlob(req.Template, r) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// ValidateTag reports why tag cannot name a route tag: empty, longer than
// 64 bytes, or holding anything but letters, digits, '.', '_', ':' and '-'.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > 64 {
		return invalidf("tag: %.80q; want 1 to 64 letters, digits, '.', '_', ':' or '-', e.g. pii", tag)
	}
	for _, c := range tag {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)) {
			return invalidf("tag: %.80q; want 1 to 64 letters, digits, '.', '_', ':' or '-', e.g. pii", tag)
		}
	}
	return nil
}

// ValidateGlob reports why pattern cannot select routes: it must start
// with '/', hold no space, control character, query or fragment, and be
// at most routes.MaxPathLen bytes.
func ValidateGlob(pattern string) error {
	const hint = "; want a route template such as /customers/{id}/orders, with * for one segment and ** for any number"
	switch {
	case pattern == "" || pattern[0] != '/':
		return invalidf("template: %.80q must start with '/'%s", pattern, hint)
	case len(pattern) > routes.MaxPathLen:
		return invalidf("template: longer than %d bytes", routes.MaxPathLen)
	}
	for i := 0; i < len(pattern); i++ {
		if c := pattern[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return invalidf("template: %.80q has a space, control character, query or fragment at byte %d%s", pattern, i, hint)
		}
	}
	return nil
}

// MatchGlob reports whether route matches pattern: segment by segment in
// normalised form (inventory.NormalizeTemplate), "*" matching any one
// segment and "**" any number of segments, none included.
func MatchGlob(pattern, route string) bool {
	p, r := segs(pattern), segs(route)
	// m[j] says whether p[:i] matches r[:j], row by row over i.
	m := make([]bool, len(r)+1)
	m[0] = true
	for _, ps := range p {
		next := make([]bool, len(r)+1)
		if ps == "**" {
			next[0] = m[0]
			for j := 1; j <= len(r); j++ {
				next[j] = m[j] || next[j-1]
			}
		} else {
			for j := 1; j <= len(r); j++ {
				next[j] = m[j-1] && (ps == "*" || ps == r[j-1])
			}
		}
		m = next
	}
	return m[len(r)]
}

func segs(t string) []string {
	n := inventory.NormalizeTemplate(t)
	if n == "/" || n == "" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(n, "/"), "/")
}
