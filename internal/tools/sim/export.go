package sim

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	inv "github.com/agentwatch/agentwatch/pkg/inventory"
)

// RouteSpec is one route template of the simulated API inventory.
type RouteSpec struct {
	// Template is the normalised route, e.g. /customers/{id}/orders.
	Template string
	// Methods are the HTTP methods served on it, sorted.
	Methods []string
	// Service is the upstream service that serves it.
	Service string
	// Sensitive marks routes that expose bulk or personal data.
	Sensitive bool
	// Deprecated marks routes kept only for old clients: a call is a
	// zombie-API finding.
	Deprecated bool
	// Roles are the agent roles whose normal work uses it, sorted.
	Roles []Role
}

// Tags returns the inventory tags of r: "sensitive" and/or "deprecated".
func (r RouteSpec) Tags() []string {
	var tags []string
	if r.Sensitive {
		tags = append(tags, "sensitive")
	}
	if r.Deprecated {
		tags = append(tags, "deprecated")
	}
	return tags
}

// Routes returns the route inventory of this run, sorted by template:
// Inventory plus the routes of its RoleRollout events, which the inventory
// lists from the start of the run (the change was approved ahead). Recon
// probes of the endpoint_sprawl incident are deliberately absent from it.
// The caller owns the result.
func (s *Simulator) Routes() []RouteSpec {
	if len(s.rolledOut) == 0 {
		return Inventory()
	}
	return inventory(s.rolledOut)
}

// Inventory returns the route inventory every simulation uses, sorted by
// template: the same for every seed. Routes of RoleRollout events are not
// in it; Simulator.Routes adds those a run configures.
func Inventory() []RouteSpec { return inventory(nil) }

// inventory builds the inventory of the catalog, with the rollout routes
// named in rolledOut.
func inventory(rolledOut map[string]bool) []RouteSpec {
	byTemplate := map[string]*RouteSpec{}
	for _, role := range Roles {
		for _, o := range catalog[role] {
			if o.rollout && !rolledOut[o.template] {
				continue
			}
			r := byTemplate[o.template]
			if r == nil {
				r = &RouteSpec{Template: o.template, Service: o.service}
				byTemplate[o.template] = r
			}
			if !slices.Contains(r.Methods, o.method) {
				r.Methods = append(r.Methods, o.method)
			}
			if !o.deprecated && !slices.Contains(r.Roles, role) {
				r.Roles = append(r.Roles, role)
			}
			r.Sensitive = r.Sensitive || o.sensitive
			r.Deprecated = r.Deprecated || o.deprecated
		}
	}
	out := make([]RouteSpec, 0, len(byTemplate))
	for _, r := range byTemplate {
		slices.Sort(r.Methods)
		slices.Sort(r.Roles)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b RouteSpec) int { return strings.Compare(a.Template, b.Template) })
	return out
}

// The YAML schemas below are also documented in deploy/sim/README.md.
//
// Registry (registry.yaml):
//
//	agents:
//	  - id: cs-agent-001          # the agent id the ingest resolves
//	    role: customer_service
//	    owner: cx-platform@example.com
//	    credential_id: key_x1y2z3  # what a responder would revoke
//	    approved_routes:           # route templates it may call
//	      - /customers/{id}
//
// Route inventory (routes.yaml):
//
//	routes:
//	  - template: /customers/{id}/export
//	    methods: [GET]
//	    service: crm
//	    tags: [sensitive]          # any of: sensitive, deprecated
//	    roles: [customer_service]  # roles whose normal work uses it

type yamlRegistry struct {
	Agents []yamlAgent `yaml:"agents"`
}

type yamlAgent struct {
	ID             string   `yaml:"id"`
	Role           Role     `yaml:"role"`
	Owner          string   `yaml:"owner"`
	CredentialID   string   `yaml:"credential_id"`
	ApprovedRoutes []string `yaml:"approved_routes"`
}

type yamlRoutes struct {
	Routes []yamlRoute `yaml:"routes"`
}

type yamlRoute struct {
	Template string   `yaml:"template"`
	Methods  []string `yaml:"methods,flow"`
	Service  string   `yaml:"service"`
	Tags     []string `yaml:"tags,flow,omitempty"`
	Roles    []Role   `yaml:"roles,flow,omitempty"`
}

// WriteRegistryYAML writes r in the registry schema above.
func WriteRegistryYAML(w io.Writer, r Registry) error {
	doc := yamlRegistry{Agents: make([]yamlAgent, len(r.Agents))}
	for i, a := range r.Agents {
		doc.Agents[i] = yamlAgent{ID: a.ID, Role: a.Role, Owner: a.Owner, CredentialID: a.CredentialID, ApprovedRoutes: a.ApprovedRoutes}
	}
	return writeYAML(w, "agent registry", doc)
}

// ReadRegistryYAML reads a registry written by WriteRegistryYAML. Only the
// fields of the schema are filled in.
func ReadRegistryYAML(rd io.Reader) (Registry, error) {
	var doc yamlRegistry
	dec := yaml.NewDecoder(rd)
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return Registry{}, fmt.Errorf("decode agent registry: %w", err)
	}
	r := Registry{Agents: make([]Agent, len(doc.Agents))}
	for i, a := range doc.Agents {
		r.Agents[i] = Agent{ID: a.ID, Role: a.Role, Owner: a.Owner, CredentialID: a.CredentialID, ApprovedRoutes: a.ApprovedRoutes}
	}
	return r, nil
}

// WriteRoutesYAML writes routes in the route-inventory schema above.
func WriteRoutesYAML(w io.Writer, routes []RouteSpec) error {
	doc := yamlRoutes{Routes: make([]yamlRoute, len(routes))}
	for i, r := range routes {
		doc.Routes[i] = yamlRoute{Template: r.Template, Methods: r.Methods, Service: r.Service, Tags: r.Tags(), Roles: r.Roles}
	}
	return writeYAML(w, "route inventory", doc)
}

// ReadRoutesYAML reads a route inventory written by WriteRoutesYAML.
func ReadRoutesYAML(rd io.Reader) ([]RouteSpec, error) {
	var doc yamlRoutes
	dec := yaml.NewDecoder(rd)
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode route inventory: %w", err)
	}
	out := make([]RouteSpec, len(doc.Routes))
	for i, r := range doc.Routes {
		out[i] = RouteSpec{Template: r.Template, Methods: r.Methods, Service: r.Service, Roles: r.Roles,
			Sensitive: slices.Contains(r.Tags, "sensitive"), Deprecated: slices.Contains(r.Tags, "deprecated")}
	}
	return out, nil
}

// The OpenAPI document holds what pkg/routes reads (path keys, operation
// tags, deprecated: true) plus the minimum that makes it valid OpenAPI 3.

type openAPIDoc struct {
	OpenAPI string                    `yaml:"openapi"`
	Info    openAPIInfo               `yaml:"info"`
	Paths   map[string]map[string]any `yaml:"paths"`
}

type openAPIInfo struct {
	Title   string `yaml:"title"`
	Version string `yaml:"version"`
}

type openAPIOperation struct {
	OperationID string                     `yaml:"operationId"`
	Tags        []string                   `yaml:"tags,flow"`
	Deprecated  bool                       `yaml:"deprecated,omitempty"`
	Responses   map[string]openAPIResponse `yaml:"responses"`
}

type openAPIResponse struct {
	Description string `yaml:"description"`
}

type openAPIParam struct {
	Name     string            `yaml:"name"`
	In       string            `yaml:"in"`
	Required bool              `yaml:"required"`
	Schema   map[string]string `yaml:"schema,flow"`
}

// WriteOpenAPI writes routes as an OpenAPI 3 document. Each operation is
// tagged with its service and, where they apply, "sensitive" and
// "deprecated"; deprecated operations also say deprecated: true.
func WriteOpenAPI(w io.Writer, routes []RouteSpec) error {
	doc := openAPIDoc{
		OpenAPI: "3.0.3",
		Info:    openAPIInfo{Title: "agentwatch simulated API inventory", Version: "1.0.0"},
		Paths:   map[string]map[string]any{},
	}
	for _, r := range routes {
		item := map[string]any{}
		var params []openAPIParam
		for _, seg := range strings.Split(r.Template, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				params = append(params, openAPIParam{Name: seg[1 : len(seg)-1], In: "path", Required: true, Schema: map[string]string{"type": "string"}})
			}
		}
		if len(params) > 0 {
			item["parameters"] = params
		}
		for _, m := range r.Methods {
			item[strings.ToLower(m)] = openAPIOperation{
				OperationID: operationID(m, r.Template),
				Tags:        append([]string{r.Service}, r.Tags()...),
				Deprecated:  r.Deprecated,
				Responses:   map[string]openAPIResponse{"200": {Description: "OK"}},
			}
		}
		doc.Paths[r.Template] = item
	}
	return writeYAML(w, "openapi document", doc)
}

// operationID makes a stable id such as get_customers_id_orders.
func operationID(method, template string) string {
	id := strings.ToLower(method)
	for _, seg := range strings.Split(template, "/") {
		seg = strings.Trim(seg, "{}")
		if seg == "" {
			continue
		}
		id += "_" + strings.ReplaceAll(seg, "-", "_")
	}
	return id
}

func writeYAML(w io.Writer, what string, v any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}

// ExampleConfig is the simulation deploy/sim's example files come from:
// the default fleet of 60 agents, seed 1.
func ExampleConfig() Config {
	return Config{Seed: 1, Start: time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC), Duration: time.Hour}
}

// Catalog parses the agent registry and route inventory the simulated fleet
// is deployed with, through the same parsers the detector's files go
// through.
func (s *Simulator) Catalog() (*inv.Registry, *inv.Inventory, error) {
	var rb, ib bytes.Buffer
	if err := WriteRegistryYAML(&rb, s.Registry()); err != nil {
		return nil, nil, err
	}
	if err := WriteRoutesYAML(&ib, s.Routes()); err != nil {
		return nil, nil, err
	}
	reg, err := inv.ParseRegistry("agents.yaml", rb.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("simulated registry: %w", err)
	}
	routes, err := inv.ParseRoutes("routes.yaml", ib.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("simulated routes: %w", err)
	}
	return reg, routes, nil
}
