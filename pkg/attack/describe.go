package attack

// Catalogues a Ref names.
const (
	OWASPAPI     = "OWASP API Security Top 10 (2023)"
	OWASPAgentic = "OWASP Top 10 for Agentic Applications (2026)"
	MITREATTACK  = "MITRE ATT&CK"
)

// The references, each checked against its catalogue's own list.
var (
	refBOLA       = Ref{OWASPAPI, "API1:2023", "Broken Object Level Authorization"}
	refBrokenAuth = Ref{OWASPAPI, "API2:2023", "Broken Authentication"}
	refBFLA       = Ref{OWASPAPI, "API5:2023", "Broken Function Level Authorization"}
	refInventory  = Ref{OWASPAPI, "API9:2023", "Improper Inventory Management"}

	refToolMisuse = Ref{OWASPAgentic, "ASI02", "Tool Misuse and Exploitation"}
	refIdentity   = Ref{OWASPAgentic, "ASI03", "Identity and Privilege Abuse"}
	refCascading  = Ref{OWASPAgentic, "ASI08", "Cascading Failures"}
	refRogue      = Ref{OWASPAgentic, "ASI10", "Rogue Agents"}

	refRepositories = Ref{MITREATTACK, "T1213", "Data from Information Repositories"}
	refWebService   = Ref{MITREATTACK, "T1567", "Exfiltration Over Web Service"}
	refSizeLimits   = Ref{MITREATTACK, "T1030", "Data Transfer Size Limits"}
	refAutomated    = Ref{MITREATTACK, "T1119", "Automated Collection"}
	refBruteForce   = Ref{MITREATTACK, "T1110", "Brute Force"}
	refWordlist     = Ref{MITREATTACK, "T1595.003", "Active Scanning: Wordlist Scanning"}
	refValid        = Ref{MITREATTACK, "T1078", "Valid Accounts"}
	refToken        = Ref{MITREATTACK, "T1550.001", "Use Alternate Authentication Material: Application Access Token"}
)

var infos = map[Class]Info{
	Exfiltration: {
		Title:      "Data exfiltration",
		Meaning:    "The agent is pulling far more data than it ever does, in bulk: a hijacked or misused agent copying records out.",
		CheckFirst: "Which records the routes returned and where the agent sent them next; if nobody asked for a bulk export, revoke its credential.",
		Refs:       []Ref{refToolMisuse, refRepositories, refWebService},
	},
	SlowExfiltration: {
		Title:      "Slow exfiltration",
		Meaning:    "A few calls a minute, each answered with far more data than usual: data leaving slowly to stay under per-minute limits.",
		CheckFirst: "How long it has been going on and the total bytes of the agent's sensitive calls over the last hours, not just this minute.",
		Refs:       []Ref{refToolMisuse, refSizeLimits},
	},
	IDEnumeration: {
		Title:      "ID enumeration",
		Meaning:    "The agent walks resource ids under one route far beyond its habit: scraping, or probing for objects it should not see (BOLA).",
		CheckFirst: "Whether the ids it read belong to the customers or cases it serves, and whether the route checks ownership of each object.",
		Refs:       []Ref{refBOLA, refAutomated},
	},
	AuthStorm: {
		Title:      "Authentication or denial storm",
		Meaning:    "A burst of calls answered 401 or 403: a revoked or expired credential retried in a loop, or someone trying access it lacks.",
		CheckFirst: "Whether the credential was just rotated or revoked, and which routes were denied: its own (a broken client) or others' (probing).",
		Refs:       []Ref{refBrokenAuth, refBruteForce},
	},
	ReconSprawl: {
		Title:      "Reconnaissance sprawl",
		Meaning:    "Many routes the agent never called, mostly answered 404: someone mapping the API, often with a wordlist (/.env, /admin…).",
		CheckFirst: "Which of the probed routes answered 2xx: those are what was found; then who controls the agent's prompt or code now.",
		Refs:       []Ref{refInventory, refWordlist},
	},
	OutOfRole: {
		Title:      "Out-of-role access",
		Meaning:    "Calls to routes or sensitive data outside what the agent's role is approved for: over-broad permissions being used.",
		CheckFirst: "Whether the calls succeeded (2xx) or were denied, and who changed the agent's task or tools; then narrow its credential's scope.",
		Refs:       []Ref{refBFLA, refIdentity, refValid},
	},
	OffHours: {
		Title:      "Off-hours use",
		Meaning:    "The agent is busy in an hour it is almost never active in: a new schedule, or its credential used by someone else.",
		CheckFirst: "Whether a batch job or schedule changed; if not, where the calls come from and what they touched.",
		Refs:       []Ref{refValid},
	},
	CredentialReplay: {
		Title:      "Credential replay from a new address",
		Meaning:    "The agent's credential is used from a source address it never used: most often a leaked key replayed from elsewhere.",
		CheckFirst: "Whether the new address is a known egress of your platform (a new node or NAT); if not, revoke and rotate the credential.",
		Refs:       []Ref{refBrokenAuth, refIdentity, refToken},
	},
	ZombieAPI: {
		Title:      "Zombie API use",
		Meaning:    "Calls to a route marked deprecated: an old client or hard-coded URL, or someone using a version with weaker checks.",
		CheckFirst: "Which client version makes the calls and whether the deprecated route still enforces the checks its successor does.",
		Refs:       []Ref{refInventory},
	},
	ShadowAgent: {
		Title:      "Shadow agent",
		Meaning:    "Traffic from an agent id the registry does not know: an agent deployed outside review, or a forged id.",
		CheckFirst: "Which credential and source address it used and who owns them; register the agent or block the credential.",
		Refs:       []Ref{refRogue},
	},
	FleetEvent: {
		Title:      "Fleet-wide event",
		Meaning:    "Many agents changed at once for the same reason: usually an upstream outage or a platform change, rarely an attack.",
		CheckFirst: "Upstream status and recent deploys at that minute; act on single agents only if some stand out after it ends.",
		Refs:       []Ref{refCascading},
	},
	Unclassified: {
		Title:      "Unusual behaviour",
		Meaning:    "The agent's behaviour is improbable for it, but fits none of the known attack patterns.",
		CheckFirst: "The features that explain the window, compared with the agent's last normal hour.",
	},
}

// Describe returns what an alert shows about c. An unknown class is
// described as Unclassified under its own name.
func Describe(c Class) Info {
	in, ok := infos[c]
	if !ok {
		in = infos[Unclassified]
	}
	in.Class = c
	in.Refs = append([]Ref(nil), in.Refs...)
	return in
}
