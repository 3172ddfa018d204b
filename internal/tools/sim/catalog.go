package sim

// Role is an agent's job; it decides which routes the agent calls and when
// it is busy.
type Role string

// The roles of simulated agents. Each has its own route set and diurnal curve.
const (
	RoleCustomerService Role = "customer_service"
	RoleFinance         Role = "finance"
	RoleHR              Role = "hr"
	RoleITOps           Role = "it_ops"
	RoleBatchReporting  Role = "batch_reporting"
)

// Roles lists every role in the order agents are dealt to them.
var Roles = []Role{RoleCustomerService, RoleFinance, RoleHR, RoleITOps, RoleBatchReporting}

// idKind says what an {id} segment of a template is filled with. Only shapes
// a route normaliser can recognise without an inventory (decimal numbers and
// UUIDs) are used, so heuristic normalisation gets the template back.
type idKind uint8

const (
	idNumeric idKind = iota
	idUUID
)

// op is one operation a role performs: a method on a route template, how
// often relative to the role's other ops, and the shape of its traffic.
type op struct {
	method   string
	template string
	service  string
	weight   float64
	query    []string // parameter names; values are invented when rendering
	ids      idKind
	reqMed   float64 // median request body bytes (0 = no body)
	respMed  float64 // median response bytes
	latMedMs float64 // median latency in milliseconds

	sensitive  bool
	deprecated bool
	// rollout marks a route a role only starts to use in a RoleRollout
	// benign event: no agent calls it, is approved for it or finds it in
	// the inventory unless the run configures that rollout.
	rollout bool
}

// catalog is every op of every role. Sensitive ops are approved for only some
// agents; deprecated ops are used by nobody except the zombie incident;
// rollout ops by nobody before a RoleRollout of their role. Rollout ops come
// last in each role so the order of the others, which the fleet's random
// draws follow, stays as it was before they existed.
var catalog = map[Role][]op{
	RoleCustomerService: {
		{method: "GET", template: "/customers/{id}", service: "crm", weight: 30, respMed: 1800, latMedMs: 35},
		{method: "GET", template: "/customers/{id}/orders", service: "crm", weight: 20, query: []string{"page", "limit"}, respMed: 9000, latMedMs: 60},
		{method: "GET", template: "/orders/{id}", service: "orders", weight: 15, respMed: 2400, latMedMs: 40},
		{method: "GET", template: "/customers/search", service: "crm", weight: 8, query: []string{"q", "limit"}, respMed: 6000, latMedMs: 120},
		{method: "POST", template: "/tickets", service: "support", weight: 10, reqMed: 900, respMed: 400, latMedMs: 80},
		{method: "GET", template: "/tickets/{id}", service: "support", weight: 10, respMed: 2200, latMedMs: 30},
		{method: "PATCH", template: "/tickets/{id}", service: "support", weight: 8, reqMed: 300, respMed: 350, latMedMs: 70},
		{method: "POST", template: "/customers/{id}/notes", service: "crm", weight: 5, reqMed: 600, respMed: 250, latMedMs: 60},
		{method: "GET", template: "/customers/{id}/export", service: "crm", weight: 0.4, respMed: 60000, latMedMs: 400, sensitive: true},
		{method: "GET", template: "/v1/customers/{id}", service: "crm-legacy", respMed: 1500, latMedMs: 90, deprecated: true},
		{method: "GET", template: "/customers/{id}/preferences", service: "crm", weight: 10, respMed: 1200, latMedMs: 40, rollout: true},
		{method: "GET", template: "/tickets/{id}/summary", service: "support", weight: 8, respMed: 1500, latMedMs: 300, rollout: true},
	},
	RoleFinance: {
		{method: "GET", template: "/invoices/{id}", service: "billing", weight: 30, ids: idUUID, respMed: 3000, latMedMs: 45},
		{method: "GET", template: "/invoices", service: "billing", weight: 15, query: []string{"status", "from", "to"}, respMed: 25000, latMedMs: 150},
		{method: "POST", template: "/payments", service: "payments", weight: 8, reqMed: 700, respMed: 500, latMedMs: 220},
		{method: "GET", template: "/payments/{id}", service: "payments", weight: 12, ids: idUUID, respMed: 1200, latMedMs: 40},
		{method: "POST", template: "/invoices/{id}/refunds", service: "billing", weight: 3, ids: idUUID, reqMed: 400, respMed: 450, latMedMs: 260},
		{method: "GET", template: "/ledger/entries", service: "ledger", weight: 10, query: []string{"from", "to", "page"}, respMed: 40000, latMedMs: 300},
		{method: "GET", template: "/accounts/{id}/balance", service: "ledger", weight: 1, respMed: 900, latMedMs: 50, sensitive: true},
		{method: "GET", template: "/v1/invoices/{id}", service: "billing-legacy", ids: idUUID, respMed: 2800, latMedMs: 110, deprecated: true},
		{method: "GET", template: "/invoices/{id}/line-items", service: "billing", weight: 10, ids: idUUID, respMed: 5000, latMedMs: 60, rollout: true},
		{method: "GET", template: "/payments/{id}/status", service: "payments", weight: 8, ids: idUUID, respMed: 300, latMedMs: 30, rollout: true},
	},
	RoleHR: {
		{method: "GET", template: "/employees/{id}", service: "hris", weight: 30, respMed: 2000, latMedMs: 40},
		{method: "PUT", template: "/employees/{id}/timeoff", service: "hris", weight: 10, reqMed: 350, respMed: 300, latMedMs: 90},
		{method: "GET", template: "/positions", service: "recruiting", weight: 10, query: []string{"dept"}, respMed: 12000, latMedMs: 70},
		{method: "POST", template: "/candidates", service: "recruiting", weight: 6, reqMed: 2500, respMed: 400, latMedMs: 110},
		{method: "GET", template: "/candidates/{id}", service: "recruiting", weight: 14, ids: idUUID, respMed: 3500, latMedMs: 45},
		{method: "GET", template: "/employees/{id}/payroll", service: "payroll", weight: 1, respMed: 4000, latMedMs: 120, sensitive: true},
		{method: "GET", template: "/legacy/employees/{id}", service: "hris-legacy", respMed: 1900, latMedMs: 150, deprecated: true},
		{method: "GET", template: "/employees/{id}/skills", service: "hris", weight: 10, respMed: 1600, latMedMs: 45, rollout: true},
		{method: "GET", template: "/positions/{id}/applicants", service: "recruiting", weight: 6, respMed: 8000, latMedMs: 90, rollout: true},
	},
	RoleITOps: {
		{method: "GET", template: "/hosts/{id}", service: "inventory", weight: 25, respMed: 1500, latMedMs: 25},
		{method: "GET", template: "/hosts", service: "inventory", weight: 8, query: []string{"status", "limit"}, respMed: 30000, latMedMs: 90},
		{method: "POST", template: "/hosts/{id}/restart", service: "orchestrator", weight: 3, reqMed: 80, respMed: 200, latMedMs: 900},
		{method: "GET", template: "/incidents/{id}", service: "oncall", weight: 12, respMed: 2600, latMedMs: 35},
		{method: "POST", template: "/incidents/{id}/ack", service: "oncall", weight: 5, reqMed: 120, respMed: 150, latMedMs: 60},
		{method: "GET", template: "/deployments/{id}", service: "deploy", weight: 10, ids: idUUID, respMed: 2000, latMedMs: 40},
		{method: "GET", template: "/metrics/query", service: "metrics", weight: 15, query: []string{"query", "start", "end"}, respMed: 18000, latMedMs: 180},
		{method: "POST", template: "/users/{id}/reset-password", service: "iam", weight: 0.5, reqMed: 90, respMed: 120, latMedMs: 140, sensitive: true},
		{method: "POST", template: "/v1/hosts/{id}/reboot", service: "orchestrator-legacy", reqMed: 60, respMed: 180, latMedMs: 1200, deprecated: true},
		{method: "GET", template: "/hosts/{id}/patches", service: "inventory", weight: 10, respMed: 4000, latMedMs: 60, rollout: true},
		{method: "GET", template: "/alerts", service: "alerting", weight: 8, query: []string{"state", "limit"}, respMed: 9000, latMedMs: 80, rollout: true},
	},
	RoleBatchReporting: {
		{method: "GET", template: "/reports/daily", service: "reports", weight: 10, query: []string{"date"}, respMed: 250000, latMedMs: 900},
		{method: "GET", template: "/reports/weekly", service: "reports", weight: 2, query: []string{"week"}, respMed: 600000, latMedMs: 1800},
		{method: "POST", template: "/exports", service: "reports", weight: 4, reqMed: 300, respMed: 300, latMedMs: 150},
		{method: "GET", template: "/exports/{id}", service: "reports", weight: 8, ids: idUUID, respMed: 120000, latMedMs: 500},
		{method: "GET", template: "/customers", service: "crm", weight: 20, query: []string{"page", "limit", "updated_since"}, respMed: 80000, latMedMs: 250},
		{method: "GET", template: "/invoices", service: "billing", weight: 12, query: []string{"status", "from", "to"}, respMed: 40000, latMedMs: 200},
		{method: "GET", template: "/payroll/runs/{id}", service: "payroll", weight: 1, respMed: 150000, latMedMs: 600, sensitive: true},
		{method: "GET", template: "/reports/legacy/daily", service: "reports-legacy", respMed: 200000, latMedMs: 2500, deprecated: true},
		{method: "GET", template: "/exports/{id}/manifest", service: "reports", weight: 6, ids: idUUID, respMed: 5000, latMedMs: 80, rollout: true},
		{method: "GET", template: "/reports/monthly", service: "reports", weight: 3, query: []string{"month"}, respMed: 900000, latMedMs: 2500, rollout: true},
	},
}

// reconPaths are routes no inventory lists: what an agent probing the API
// surface tries. Recon traffic also invents numbered variants of these.
var reconPaths = []string{
	"/admin", "/admin/users", "/admin/config", "/internal/debug/vars", "/internal/metrics",
	"/.env", "/.git/config", "/api/v2/secrets", "/graphql", "/actuator/env", "/actuator/heapdump",
	"/swagger.json", "/openapi.yaml", "/v2/api-docs", "/backup.sql", "/users", "/users/export",
	"/keys", "/tokens", "/config.json", "/server-status", "/wp-login.php", "/console", "/debug/pprof/heap",
}

// userAgents are the HTTP clients of common agent frameworks.
var userAgents = []string{
	"langchain-python/0.3.7", "langchain-js/0.3.2", "openai-agents/1.2.0", "autogen/0.4.2",
	"crewai/0.80.0", "llamaindex/0.11.20", "semantic-kernel/1.18.0", "haystack/2.8.0",
	"pydantic-ai/0.0.14", "smolagents/1.4.1", "python-httpx/0.27.2 mcp-client/1.1",
}

// owners are the teams that own agents of each role.
var owners = map[Role][]string{
	RoleCustomerService: {"support-automation@example.com", "cx-platform@example.com"},
	RoleFinance:         {"finance-eng@example.com", "ap-automation@example.com"},
	RoleHR:              {"people-systems@example.com"},
	RoleITOps:           {"sre@example.com", "platform-ops@example.com"},
	RoleBatchReporting:  {"data-eng@example.com", "bi-team@example.com"},
}
