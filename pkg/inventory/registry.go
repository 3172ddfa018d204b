package inventory

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/internal/strictyaml"
)

// Agent is one registered agent.
type Agent struct {
	// ID is the agent id the ingest resolves from a request (header, JWT
	// subject, consumer, certificate CN); unique in the registry.
	ID string
	// Role groups agents that do the same work, e.g. customer_service.
	// May be empty.
	Role string
	// Owner is who answers for the agent, e.g. a team address.
	Owner string
	// CredentialID names the credential a responder would revoke.
	CredentialID string
	// Labels are free-form key/value pairs, carried into findings.
	Labels map[string]string
	// ApprovedRoutes are the route templates the agent may call, as
	// written, without later duplicates (same normalised form). Nil means the registry gives no list
	// for this agent, so the unapproved-route rule does not apply to it;
	// empty (but not nil) means it is approved for no route at all.
	ApprovedRoutes []string
	// ReviewBy is the date by which the entry must be reviewed (is the
	// agent still needed, is its owner right); zero when not given.
	ReviewBy time.Time
	// CredentialExpires is the date the credential expires; zero when not
	// given.
	CredentialExpires time.Time
	// CredentialIssued is the date the credential was issued, and
	// CredentialMaxAgeDays how many days it may live (the "renew every 90
	// days" rule); MaxAge is 0 when not given, and needs Issued.
	CredentialIssued     time.Time
	CredentialMaxAgeDays int
}

// CredentialDeadline returns when the agent's credential must be renewed:
// the earlier of CredentialExpires and CredentialIssued plus
// CredentialMaxAgeDays. ok is false when the entry gives neither.
func (a *Agent) CredentialDeadline() (deadline time.Time, ok bool) {
	if !a.CredentialExpires.IsZero() {
		deadline, ok = a.CredentialExpires, true
	}
	if a.CredentialMaxAgeDays > 0 && !a.CredentialIssued.IsZero() {
		d := a.CredentialIssued.AddDate(0, 0, a.CredentialMaxAgeDays)
		if !ok || d.Before(deadline) {
			deadline, ok = d, true
		}
	}
	return deadline, ok
}

// DateLayout is how the registry's dates are written: YYYY-MM-DD, a UTC
// day.
const DateLayout = time.DateOnly

// MaxCredentialAgeDays bounds credential_max_age_days: ten years.
const MaxCredentialAgeDays = 3650

// Registry is the agent registry. It is immutable after construction and
// safe for concurrent reads. A nil *Registry behaves like EmptyRegistry().
type Registry struct {
	enabled bool
	agents  map[string]*entry
	ids     []string // sorted
	roles   []string // sorted, without ""
}

type entry struct {
	agent Agent
	// approved holds the normalised ApprovedRoutes; nil when the agent has
	// no list.
	approved map[string]struct{}
}

// EmptyRegistry returns a registry that is not enabled: no file is
// configured, so no agent is known and the shadow-agent and
// unapproved-route rules are off (see Enabled).
func EmptyRegistry() *Registry { return &Registry{} }

var registryFields = []string{"agents"}

var agentFields = []string{"id", "role", "owner", "credential_id", "labels", "approved_routes",
	"review_by", "credential_expires", "credential_issued", "credential_max_age_days"}

// ParseRegistry parses an agent registry (YAML or JSON; schema in
// docs/registry.md):
//
//	agents:
//	  - id: cs-agent-001
//	    role: customer_service
//	    owner: cx-platform@example.com
//	    credential_id: key_x1y2z3
//	    labels: {team: cx}
//	    approved_routes: [/customers/{id}, /customers/{id}/orders]
//	    review_by: 2026-06-30
//	    credential_issued: 2026-03-01
//	    credential_max_age_days: 90
//
// name is the file name errors start with. Every problem is reported at
// once, each naming the line, the entry (index and id) and the field:
// unknown fields, empty or duplicate ids, ids with surrounding spaces,
// bad route templates, wrong types. An empty file is an error; an empty
// list (`agents: []`) is a registry with no agents, so every agent seen is
// a shadow agent. The result is enabled.
func ParseRegistry(name string, data []byte) (*Registry, error) {
	d, top := load(name, data, registryFields...)
	r := &Registry{enabled: true, agents: map[string]*entry{}}
	firstAt := map[string]int{}
	for i, n := range d.seq(get(top, "agents"), "agents") {
		ctx := "agents[" + strconv.Itoa(i) + "]"
		fs, unknown := d.mapping(n, ctx, "", agentFields)
		if fs == nil {
			continue
		}
		id := d.str(get(fs, "id"), ctx, "id")
		if id != "" {
			ctx += fmt.Sprintf(" (id %q)", id)
		}
		d.unknown(unknown, ctx, agentFields)
		switch idNode := get(fs, "id"); {
		case id == "":
			d.errorf(n, ctx, "id", "missing or empty; every agent needs the id the ingest resolves for it")
			continue
		case strings.TrimSpace(id) != id:
			d.errorf(idNode, ctx, "id", "has leading or trailing spaces, which no resolved agent id has; remove them")
			continue
		}
		if j, dup := firstAt[id]; dup {
			d.errorf(get(fs, "id"), ctx, "id", "duplicate of agents[%d]; merge the two entries", j)
			continue
		}
		firstAt[id] = i
		e := &entry{agent: Agent{
			ID:           id,
			Role:         d.str(get(fs, "role"), ctx, "role"),
			Owner:        d.str(get(fs, "owner"), ctx, "owner"),
			CredentialID: d.str(get(fs, "credential_id"), ctx, "credential_id"),
			Labels:       d.strMap(get(fs, "labels"), ctx, "labels"),
		}}
		e.agent.ReviewBy = d.date(get(fs, "review_by"), ctx, "review_by")
		e.agent.CredentialExpires = d.date(get(fs, "credential_expires"), ctx, "credential_expires")
		e.agent.CredentialIssued = d.date(get(fs, "credential_issued"), ctx, "credential_issued")
		if n := get(fs, "credential_max_age_days"); n != nil {
			e.agent.CredentialMaxAgeDays = d.days(n, ctx, "credential_max_age_days")
			if e.agent.CredentialMaxAgeDays > 0 && e.agent.CredentialIssued.IsZero() {
				d.errorf(n, ctx, "credential_max_age_days", "needs credential_issued, the date the credential's age counts from")
			}
		}
		if list, nodes, ok := d.strs(get(fs, "approved_routes"), ctx, "approved_routes"); ok {
			e.approved = make(map[string]struct{}, len(list))
			e.agent.ApprovedRoutes = make([]string, 0, len(list))
			for j, t := range list {
				if err := checkTemplate(t); err != nil {
					d.errorf(nodes[j], ctx, "approved_routes["+strconv.Itoa(j)+"]", "%v", err)
					continue
				}
				key := NormalizeTemplate(t)
				if _, dup := e.approved[key]; dup {
					continue
				}
				e.agent.ApprovedRoutes = append(e.agent.ApprovedRoutes, t)
				e.approved[key] = struct{}{}
			}
		}
		r.agents[id] = e
		r.ids = append(r.ids, id)
		if role := e.agent.Role; role != "" && !slices.Contains(r.roles, role) {
			r.roles = append(r.roles, role)
		}
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	slices.Sort(r.ids)
	slices.Sort(r.roles)
	return r, nil
}

// Enabled reports whether the registry came from a file. When it did not,
// the shadow-agent and unapproved-route rules must be off: Lookup finds no
// agent, and that means nothing.
func (r *Registry) Enabled() bool { return r != nil && r.enabled }

// Lookup returns the agent with this id. The *Agent is shared: callers
// must not modify it or its slices and maps. It does not allocate.
func (r *Registry) Lookup(id string) (*Agent, bool) {
	if r == nil {
		return nil, false
	}
	e, ok := r.agents[id]
	if !ok {
		return nil, false
	}
	return &e.agent, true
}

// Approved reports whether the agent may call route, a template compared
// in normalised form (see NormalizeTemplate). known is false when the
// unapproved-route rule cannot apply: the agent is not registered (that
// is the shadow-agent rule's business) or its entry has no
// approved_routes list. It does not allocate for templates up to 256
// bytes.
func (r *Registry) Approved(agentID, route string) (approved, known bool) {
	if r == nil {
		return false, false
	}
	e, ok := r.agents[agentID]
	if !ok || e.approved == nil {
		return false, false
	}
	_, approved = lookup(e.approved, route)
	return approved, true
}

// Len returns the number of registered agents. Len and IDs look like
// Inventory's Len and Templates: nil-safe getters of a different type.
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	return len(r.agents)
}

// IDs returns the registered agent ids, sorted. The slice is shared:
// callers must not modify it.
func (r *Registry) IDs() []string {
	if r == nil {
		return nil
	}
	return r.ids
}

// Roles returns the distinct non-empty roles of the registered agents,
// sorted. The slice is shared: callers must not modify it.
func (r *Registry) Roles() []string {
	if r == nil {
		return nil
	}
	return r.roles
}

// UnknownRoutes returns, sorted and deduplicated, the approved routes of
// any agent that inv does not list: likely typos, or an inventory that is
// out of date. It returns nil when inv is not enabled.
func (r *Registry) UnknownRoutes(inv *Inventory) []string {
	if r == nil || !inv.Enabled() {
		return nil
	}
	var out []string
	for _, id := range r.ids {
		for _, t := range r.agents[id].agent.ApprovedRoutes {
			if _, ok := inv.Lookup(t); !ok {
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// date decodes an optional YYYY-MM-DD field; null or absent is the zero
// time.
func (d *doc) date(n *yaml.Node, ctx, path string) time.Time {
	v := d.str(n, ctx, path)
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(DateLayout, v)
	if err != nil {
		d.errorf(n, ctx, path, "%.40q is not a date; write YYYY-MM-DD, e.g. 2026-06-30", v)
		return time.Time{}
	}
	return t
}

// days decodes a whole number of days from 1 to MaxCredentialAgeDays; null
// is 0.
func (d *doc) days(n *yaml.Node, ctx, path string) int {
	if strictyaml.IsNull(n) {
		return 0
	}
	v := d.str(n, ctx, path)
	if v == "" {
		return 0
	}
	days, err := strconv.Atoi(v)
	if err != nil || days < 1 || days > MaxCredentialAgeDays {
		d.errorf(n, ctx, path, "%.40q: want a whole number of days from 1 to %d, e.g. 90", v, MaxCredentialAgeDays)
		return 0
	}
	return days
}
