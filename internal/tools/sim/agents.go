package sim

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// Carrier names where a log line carries an agent's identity. The values are
// the IdentitySource the ingest is expected to report for that agent.
type Carrier string

// The identity carriers. Every agent has exactly one.
const (
	CarrierHeader   Carrier = "header"   // X-Agent-Id request header
	CarrierConsumer Carrier = "consumer" // Kong consumer username
	CarrierJWT      Carrier = "jwt"      // sub claim of a bearer JWT
	CarrierMTLS     Carrier = "mtls"     // client certificate subject CN
)

// formatCarriers says which carriers each format's default layout (as
// pkg/gateway renders and parses it) can hold such that identity.DefaultRules
// resolve the agent id from them. Agents of a format are dealt these in turn
// so every pairing appears. AWS has no mTLS here: its API key id would win
// over the certificate under the default rules (consumer before mtls).
var formatCarriers = map[string][]Carrier{
	"envoy":          {CarrierHeader, CarrierMTLS, CarrierJWT},
	"kong":           {CarrierConsumer, CarrierHeader, CarrierJWT},
	"nginx_json":     {CarrierHeader, CarrierJWT, CarrierConsumer, CarrierMTLS},
	"nginx_combined": {CarrierHeader, CarrierConsumer},
	"aws_apigw":      {CarrierConsumer},
	"canonical":      {CarrierHeader, CarrierConsumer},
}

// gatewayNames are the gateway names events carry, by format. Kong and
// combined lines have no gateway field, so pkg/gateway reports the format
// name; the truth must say the same.
var gatewayNames = map[string]string{
	"envoy":          "envoy-edge-1",
	"kong":           "kong",
	"nginx_json":     "nginx-internal-1",
	"nginx_combined": "nginx_combined",
	"aws_apigw":      "apigw-prod",
	"canonical":      "relay-1",
}

// Agent is one simulated agent as the registry knows it.
type Agent struct {
	ID    string
	Role  Role
	Owner string
	// ApprovedRoutes are the route templates the agent is approved to call:
	// every route it calls in normal operation.
	ApprovedRoutes []string
	// Format is the access-log format of the gateway the agent goes through.
	Format string
	// Gateway is that gateway's instance name.
	Gateway      string
	Carrier      Carrier
	CredentialID string
	SourceIP     string
	UserAgent    string
}

// Registry is the agent registry the simulator generated: every registered
// agent, in id order. Unregistered agents of the unregistered_agent incident
// are deliberately absent. It is a plain value, safe to share read-only.
type Registry struct {
	Agents []Agent
}

// Lookup returns the registered agent with the given id. It only looks
// like nab's Report.Profile: a lookup by name in an unrelated type.
func (r Registry) Lookup(id string) (Agent, bool) {
	if i := slices.IndexFunc(r.Agents, func(a Agent) bool { return a.ID == id }); i >= 0 {
		return r.Agents[i], true
	}
	return Agent{}, false
}

// agent is an Agent plus what the generator needs to produce its traffic.
type agent struct {
	Agent
	roleIdx int
	ident   gateway.RenderHints
	// eventCred is the credential id the agent's lines carry: CredentialID
	// where the format and carrier can hold it, else "".
	eventCred string
	ops       []*op     // ops this agent performs in normal operation
	cum       []float64 // cumulative weights over ops, for sampling
	activity  float64   // multiplier on its role's base rate
	// registered is false for agents injected by unregistered_agent.
	registered bool
}

var rolePrefix = map[Role]string{
	RoleCustomerService: "cs",
	RoleFinance:         "fin",
	RoleHR:              "hr",
	RoleITOps:           "itops",
	RoleBatchReporting:  "batch",
}

// agentID is the id of registered agent number i: its role is Roles[i%5].
func agentID(i int) string {
	return fmt.Sprintf("%s-agent-%03d", rolePrefix[Roles[i%len(Roles)]], i/len(Roles)+1)
}

// newAgent builds agent number i. Everything random about it comes from rng,
// so the same seed gives the same fleet.
func newAgent(rng *rand.Rand, i int, formats []string, start, end time.Time) *agent {
	roleIdx := i % len(Roles)
	role := Roles[roleIdx]
	format := formats[i%len(formats)]
	carriers := formatCarriers[format]
	a := &agent{
		Agent: Agent{
			ID:        agentID(i),
			Role:      role,
			Owner:     owners[role][rng.IntN(len(owners[role]))],
			Format:    format,
			Gateway:   gatewayNames[format],
			Carrier:   carriers[(i/len(formats))%len(carriers)],
			SourceIP:  fmt.Sprintf("10.%d.%d.%d", 20+roleIdx, (i>>8)&0xff, i&0xff),
			UserAgent: userAgents[rng.IntN(len(userAgents))],
		},
		roleIdx:    roleIdx,
		activity:   math.Exp(0.5 * rng.NormFloat64()),
		registered: true,
	}
	approveSensitive := rng.IntN(2) == 0
	ops := catalog[role]
	total := 0.0
	for k := range ops {
		o := &ops[k]
		if o.deprecated || o.rollout || o.weight == 0 || (o.sensitive && !approveSensitive) {
			continue
		}
		// Agents of one role differ in what they mostly do.
		w := o.weight * math.Exp(0.6*rng.NormFloat64())
		total += w
		a.ops = append(a.ops, o)
		a.cum = append(a.cum, total)
		if !slices.Contains(a.ApprovedRoutes, o.template) {
			a.ApprovedRoutes = append(a.ApprovedRoutes, o.template)
		}
	}
	a.CredentialID, a.ident, a.eventCred = identityFor(rng, a.ID, format, a.Carrier, start, end)
	return a
}

// identityFor invents a credential and the identity material that carries
// id in the given format, and returns the credential as lines carry it.
func identityFor(rng *rand.Rand, id, format string, c Carrier, start, end time.Time) (cred string, h gateway.RenderHints, carried string) {
	switch format {
	case "kong":
		cred = uuidString(rng)
		h.APIKeyID = cred // authenticated_entity.id
		carried = cred
	case "aws_apigw":
		cred = alnum(rng, 10)
		h.APIKeyID = cred
		carried = cred
	default:
		cred = "key_" + alnum(rng, 12)
	}
	switch c {
	case CarrierHeader:
		h.AgentHeader = id
	case CarrierConsumer:
		h.ConsumerUsername = id
		if format == "kong" {
			h.ConsumerID = uuidString(rng)
		}
	case CarrierJWT:
		h.BearerToken = jwtFor(rng, id, cred, start, end)
		if carried == "" {
			carried = cred // the client_id claim
		}
	case CarrierMTLS:
		h.MTLSSubject = "CN=" + id + ",OU=agents,O=Example Corp"
	}
	if format == "canonical" {
		carried = cred // the canonical form has a credential_id field
	}
	return cred, h, carried
}

// jwtFor builds a syntactically valid, unsigned-in-spirit JWT: gateways log
// it and the ingest reads its claims without verifying, which is all the
// simulation needs.
func jwtFor(rng *rand.Rand, sub, clientID string, start, end time.Time) string {
	sig := make([]byte, 64)
	for i := range sig {
		sig[i] = byte(rng.Uint32())
	}
	return jwtToken(sub, clientID, start, end, base64.RawURLEncoding.EncodeToString(sig))
}

// jwtToken assembles a JWT with the given claims and signature part.
func jwtToken(sub, clientID string, start, end time.Time, sig string) string {
	enc := base64.RawURLEncoding
	header := `{"alg":"RS256","typ":"JWT","kid":"sim-1"}`
	claims, _ := json.Marshal(map[string]any{ // strings and ints always marshal
		"iss": "https://idp.example.com/", "sub": sub, "aud": "api.example.com",
		"client_id": clientID, "iat": start.Unix(), "exp": end.Add(24 * time.Hour).Unix(),
	})
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(claims) + "." + sig
}

func uuidString(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

const alnumChars = "abcdefghijklmnopqrstuvwxyz0123456789"

func alnum(rng *rand.Rand, n int) string {
	var sb strings.Builder
	sb.Grow(n)
	for range n {
		sb.WriteByte(alnumChars[rng.IntN(len(alnumChars))])
	}
	return sb.String()
}
