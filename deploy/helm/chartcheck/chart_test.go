package chartcheck

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../agentwatch"
	release   = "aw"
	namespace = "security"
	// The image's nonroot user (internal/tools/image.UID, the Dockerfile's USER).
	imageUID = 65532
)

var services = []string{"ingest", "detector", "responder"}

// cases are the values the chart is linted and rendered with: the
// defaults, everything switched on, and everything optional switched off.
var cases = map[string]string{
	"defaults": ``,
	"everything": `
image: {repository: registry.example/agentwatch, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: regcred}]
secrets:
  existingSecret: agentwatch-secrets
  files: {clickhouse.password: ch-pass, kafka.sasl.password: kafka-pass}
  responderFiles: {responder.evidence.checkpoint_key: evidence-key}
  responderEnv: {SLACK_BOT_TOKEN: slack-token, SLACK_SIGNING_SECRET: slack-signing}
serviceMonitor:
  enabled: true
  labels: {release: prometheus}
  tlsConfig: {ca: {secret: {name: agentwatch-ca, key: ca.crt}}, serverName: agentwatch}
  basicAuth: {username: {name: scrape, key: username}, password: {name: scrape, key: password}}
http: {webConfig: {existingSecret: agentwatch-web, tls: true, probeAuthorization: "Basic cHJvYmU6eA=="}}
networkPolicy:
  metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
  apiFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress}}}]
ingest: {replicas: 3, extraArgs: [--verbose], extraEnv: [{name: GOMAXPROCS, value: "2"}], nodeSelector: {pool: agentwatch}, tolerations: [{key: dedicated, operator: Equal, value: agentwatch, effect: NoSchedule}]}
detector: {affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app.kubernetes.io/component: detector}}}}]}}}
responder: {persistence: {existingClaim: responder-state}, apiWebConfig: {existingSecret: agentwatch-api-web}}
config: {kafka: {brokers: [kafka-0.kafka:9093, kafka-1.kafka:9093]}}
`,
	"minimal": `
serviceAccount: {create: false}
networkPolicy: {enabled: false}
responder: {persistence: {enabled: false}}
`,
}

func values(t *testing.T, name string) map[string]any {
	t.Helper()
	v, err := common.ReadValues([]byte(cases[name]))
	if err != nil {
		t.Fatalf("values %s: %v", name, err)
	}
	return v
}

// TestLint is `helm lint --strict` with each set of values: a warning
// fails like an error.
func TestLint(t *testing.T) {
	for name := range cases {
		t.Run(name, func(t *testing.T) {
			l := lint.RunAll(chartDir, values(t, name), namespace)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				} else {
					t.Logf("lint: %s", m)
				}
			}
		})
	}
}

// rendered is `helm template`: every object of the chart with the values
// of case name, by kind and name.
type rendered struct {
	docs map[string][]byte // "Kind/name" → YAML
}

func render(t *testing.T, name string) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := util.ToRenderValues(ch, values(t, name), common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r := rendered{docs: map[string][]byte{}}
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		if strings.HasSuffix(f, "NOTES.txt") {
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[f], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", f, err, doc)
			}
			key := head.Kind + "/" + head.Metadata.Name
			if _, dup := r.docs[key]; dup {
				t.Fatalf("%s: %s rendered twice", f, key)
			}
			r.docs[key] = []byte(doc)
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// ServiceMonitor is the part of monitoring.coreos.com/v1 the chart uses;
// strict decoding against it catches a misspelt or misplaced field.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			Scheme        string `json:"scheme"`
			TLSConfig     *struct {
				CA struct {
					Secret *corev1.SecretKeySelector `json:"secret,omitempty"`
				} `json:"ca"`
				ServerName string `json:"serverName,omitempty"`
			} `json:"tlsConfig,omitempty"`
			BasicAuth *struct {
				Username corev1.SecretKeySelector `json:"username"`
				Password corev1.SecretKeySelector `json:"password"`
			} `json:"basicAuth,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// typed is each kind the chart may render, as its API type.
var typed = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/PersistentVolumeClaim":                func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &ServiceMonitor{} },
}

// objects decodes every rendered object strictly into its type.
func (r rendered) objects(t *testing.T) map[string]any {
	t.Helper()
	out := map[string]any{}
	for key, doc := range r.docs {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		mk, ok := typed[head.APIVersion+"/"+head.Kind]
		if !ok {
			t.Errorf("%s: kind %s/%s is not checked; add it to typed", key, head.APIVersion, head.Kind)
			continue
		}
		obj := mk()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s: strict decoding into %T: %v\n%s", key, obj, err, doc)
			continue
		}
		out[key] = obj
	}
	return out
}

// TestStrictDecoding renders every case and decodes each object into its
// k8s.io/api type with unknown fields refused.
func TestStrictDecoding(t *testing.T) {
	for name := range cases {
		t.Run(name, func(t *testing.T) {
			objs := render(t, name).objects(t)
			var keys []string
			for k := range objs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Logf("%d objects: %s", len(keys), strings.Join(keys, " "))
			want := []string{"ConfigMap/aw-agentwatch"}
			for _, s := range services {
				want = append(want, "Deployment/aw-agentwatch-"+s, "Service/aw-agentwatch-"+s, "PodDisruptionBudget/aw-agentwatch-"+s)
			}
			for _, k := range want {
				if objs[k] == nil {
					t.Errorf("%s not rendered", k)
				}
			}
		})
	}
}

// TestStrictDecodingCatchesTypos proves the decoder refuses what the API
// server would drop silently.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := yaml.UnmarshalStrict(doc, &appsv1.Deployment{}); err == nil {
		t.Fatal("spec.replica (for replicas) decoded without error")
	}
}

func deployment(t *testing.T, objs map[string]any, svc string) *appsv1.Deployment {
	t.Helper()
	d, ok := objs["Deployment/aw-agentwatch-"+svc].(*appsv1.Deployment)
	if !ok {
		t.Fatalf("no Deployment of %s", svc)
	}
	return d
}

// TestDeployments checks what makes the pods safe and probed, in every case.
func TestDeployments(t *testing.T) {
	for name := range cases {
		t.Run(name, func(t *testing.T) {
			objs := render(t, name).objects(t)
			cm := objs["ConfigMap/aw-agentwatch"].(*corev1.ConfigMap)
			var cfg struct {
				HTTP struct {
					Addr string `json:"addr"`
				} `json:"http"`
				Responder struct {
					StateDir string `json:"state_dir"`
					APIAddr  string `json:"api_addr"`
				} `json:"responder"`
			}
			if err := yaml.Unmarshal([]byte(cm.Data["agentwatch.yaml"]), &cfg); err != nil {
				t.Fatalf("the ConfigMap's agentwatch.yaml: %v", err)
			}
			for _, svc := range services {
				d := deployment(t, objs, svc)
				ps := d.Spec.Template.Spec
				sc := ps.SecurityContext
				if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != imageUID ||
					sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: pod securityContext %+v; want runAsNonRoot, runAsUser %d, seccomp RuntimeDefault", svc, sc, imageUID)
				}
				if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
					t.Errorf("%s: the service account token is mounted", svc)
				}
				if len(ps.Containers) != 1 {
					t.Fatalf("%s: %d containers", svc, len(ps.Containers))
				}
				c := ps.Containers[0]
				cs := c.SecurityContext
				if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
					cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
					cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) > 0 {
					t.Errorf("%s: container securityContext %+v; want read-only root, no privilege escalation, all capabilities dropped", svc, cs)
				}
				if want := []string{"/usr/local/bin/" + svc}; !slices.Equal(c.Command, want) {
					t.Errorf("%s: command %v; want %v", svc, c.Command, want)
				}
				if !slices.Contains(c.Args, "--config=/etc/agentwatch/agentwatch.yaml") {
					t.Errorf("%s: args %v do not name the mounted configuration", svc, c.Args)
				}
				port := containerPort(c, "http")
				if port == 0 || cfg.HTTP.Addr != fmt.Sprintf("0.0.0.0:%d", port) {
					t.Errorf("%s: http port %d but http.addr %q", svc, port, cfg.HTTP.Addr)
				}
				scheme := corev1.URISchemeHTTP
				if name == "everything" {
					scheme = corev1.URISchemeHTTPS
				}
				probe := func(what string, p *corev1.Probe, path string) {
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("http") || p.HTTPGet.Scheme != scheme {
						t.Errorf("%s: %s probe %+v; want GET %s %s on port http", svc, what, p, scheme, path)
					}
				}
				probe("liveness", c.LivenessProbe, "/healthz")
				probe("startup", c.StartupProbe, "/healthz")
				probe("readiness", c.ReadinessProbe, "/readyz")
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: resources %+v; want cpu and memory requests and a memory limit", svc, c.Resources)
				}
				if m := mount(c, "config"); m == nil || m.MountPath != "/etc/agentwatch/agentwatch.yaml" || !m.ReadOnly {
					t.Errorf("%s: config mount %+v", svc, m)
				}
				if m := mount(c, "tmp"); m == nil || m.MountPath != "/tmp" {
					t.Errorf("%s: no writable /tmp under the read-only root: %+v", svc, m)
				}
				if svc == "responder" {
					if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
						t.Errorf("responder: replicas %v, strategy %s; want 1 and Recreate", d.Spec.Replicas, d.Spec.Strategy.Type)
					}
					if m := mount(c, "state"); m == nil || m.MountPath != cfg.Responder.StateDir {
						t.Errorf("responder: state mount %+v; want it at responder.state_dir %q", m, cfg.Responder.StateDir)
					}
					if api := containerPort(c, "api"); api == 0 || cfg.Responder.APIAddr != fmt.Sprintf("0.0.0.0:%d", api) {
						t.Errorf("responder: api port %d but responder.api_addr %q", api, cfg.Responder.APIAddr)
					}
				}
			}
		})
	}
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func mount(c corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func envMap(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// TestSecrets checks the existingSecret convention: each secret becomes a
// file under /etc/agentwatch/secrets, named by KEY_file, only in the
// services that use it; without existingSecret nothing is mounted.
func TestSecrets(t *testing.T) {
	objs := render(t, "everything").objects(t)
	common := map[string]string{
		"AGENTWATCH_CLICKHOUSE_PASSWORD_FILE": "/etc/agentwatch/secrets/ch-pass",
		"AGENTWATCH_KAFKA_SASL_PASSWORD_FILE": "/etc/agentwatch/secrets/kafka-pass",
	}
	slack := map[string]string{
		"AGENTWATCH_RESPONDER_EVIDENCE_CHECKPOINT_KEY_FILE": "/etc/agentwatch/secrets/evidence-key",
	}
	for _, svc := range services {
		d := deployment(t, objs, svc)
		c := d.Spec.Template.Spec.Containers[0]
		env := envMap(c)
		want := map[string]string{}
		for k, v := range common {
			want[k] = v
		}
		if svc == "responder" {
			for k, v := range slack {
				want[k] = v
			}
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q; want %q", svc, k, env[k], v)
			}
		}
		for k := range slack {
			if svc != "responder" && env[k] != "" {
				t.Errorf("%s: gets the responder's secret %s", svc, k)
			}
		}
		var items []string
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "secrets" {
				if v.Secret == nil || v.Secret.SecretName != "agentwatch-secrets" || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
					t.Errorf("%s: secrets volume %+v; want Secret agentwatch-secrets, mode 0400", svc, v.Secret)
					continue
				}
				for _, it := range v.Secret.Items {
					items = append(items, it.Key)
				}
			}
		}
		if len(items) != len(want) {
			t.Errorf("%s: secret items %v; want %d", svc, items, len(want))
		}
		// Variables from the Secret, for the keys read from the
		// environment: the responder's only.
		fromSecret := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "agentwatch-secrets" {
				fromSecret[e.Name] = e.ValueFrom.SecretKeyRef.Key
			}
		}
		wantEnv := map[string]string{}
		if svc == "responder" {
			wantEnv = map[string]string{"SLACK_BOT_TOKEN": "slack-token", "SLACK_SIGNING_SECRET": "slack-signing"}
		}
		if fmt.Sprint(fromSecret) != fmt.Sprint(wantEnv) {
			t.Errorf("%s: variables from the Secret %v; want %v", svc, fromSecret, wantEnv)
		}
		if m := mount(c, "secrets"); m == nil || m.MountPath != "/etc/agentwatch/secrets" || !m.ReadOnly {
			t.Errorf("%s: secrets mount %+v", svc, m)
		}
	}
	for _, svc := range services {
		c := deployment(t, render(t, "defaults").objects(t), svc).Spec.Template.Spec.Containers[0]
		if mount(c, "secrets") != nil || len(c.Env) > 0 {
			t.Errorf("%s: secrets mounted or env set with no existingSecret: %+v", svc, c.Env)
		}
	}
}

// TestSelectorsMatch ties the objects together: every Service, PDB,
// NetworkPolicy and the ServiceMonitor select the pods they are for.
func TestSelectorsMatch(t *testing.T) {
	objs := render(t, "everything").objects(t)
	sm := objs["ServiceMonitor/aw-agentwatch"].(*ServiceMonitor)
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v; want port http, /metrics", sm.Spec.Endpoints)
	}
	if sm.Labels["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v miss serviceMonitor.labels", sm.Labels)
	}
	matches := func(sel map[string]string, labels map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	for _, svc := range services {
		pod := deployment(t, objs, svc).Spec.Template.Labels
		s := objs["Service/aw-agentwatch-"+svc].(*corev1.Service)
		if !matches(s.Spec.Selector, pod) {
			t.Errorf("Service %s selects %v; pods have %v", svc, s.Spec.Selector, pod)
		}
		if !matches(sm.Spec.Selector.MatchLabels, s.Labels) {
			t.Errorf("the ServiceMonitor does not select Service %s (%v)", svc, s.Labels)
		}
		if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "http" }) {
			t.Errorf("Service %s has no port http for the ServiceMonitor", svc)
		}
		pdb := objs["PodDisruptionBudget/aw-agentwatch-"+svc].(*policyv1.PodDisruptionBudget)
		if !matches(pdb.Spec.Selector.MatchLabels, pod) || pdb.Spec.MaxUnavailable == nil {
			t.Errorf("PDB %s: selector %v, maxUnavailable %v; pods have %v", svc, pdb.Spec.Selector.MatchLabels, pdb.Spec.MaxUnavailable, pod)
		}
		np := objs["NetworkPolicy/aw-agentwatch-"+svc].(*networkingv1.NetworkPolicy)
		if !matches(np.Spec.PodSelector.MatchLabels, pod) {
			t.Errorf("NetworkPolicy %s selects %v; pods have %v", svc, np.Spec.PodSelector.MatchLabels, pod)
		}
		if len(np.Spec.Ingress) == 0 || len(np.Spec.Ingress[0].From) == 0 {
			t.Errorf("NetworkPolicy %s: metricsFrom not applied: %+v", svc, np.Spec.Ingress)
		}
	}
}

// TestWebConfig checks the two ways the listeners may go beyond loopback:
// with a web configuration (mounted, named by http.web_config_file, HTTPS
// probes with the probe user's header, an HTTPS ServiceMonitor), or,
// without one, with the acknowledgement keys and plain probes.
func TestWebConfig(t *testing.T) {
	type cfg struct {
		HTTP struct {
			WebConfigFile     string `json:"web_config_file"`
			InsecureListenAck bool   `json:"insecure_listen_ack"`
		} `json:"http"`
		Responder struct {
			APIWebConfigFile     string `json:"api_web_config_file"`
			APIInsecureListenAck bool   `json:"api_insecure_listen_ack"`
		} `json:"responder"`
	}
	load := func(objs map[string]any) cfg {
		var c cfg
		cm := objs["ConfigMap/aw-agentwatch"].(*corev1.ConfigMap)
		if err := yaml.Unmarshal([]byte(cm.Data["agentwatch.yaml"]), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	objs := render(t, "everything").objects(t)
	c := load(objs)
	if c.HTTP.WebConfigFile != "/etc/agentwatch/web/web.yml" || c.HTTP.InsecureListenAck ||
		c.Responder.APIWebConfigFile != "/etc/agentwatch/api-web/web.yml" || c.Responder.APIInsecureListenAck {
		t.Errorf("with web configs: %+v; want both files and no acknowledgement", c)
	}
	for _, svc := range services {
		ps := deployment(t, objs, svc).Spec.Template.Spec
		c := ps.Containers[0]
		if m := mount(c, "web"); m == nil || m.MountPath != "/etc/agentwatch/web" || !m.ReadOnly {
			t.Errorf("%s: web config mount %+v", svc, m)
		}
		if m := mount(c, "api-web"); (m != nil) != (svc == "responder") {
			t.Errorf("%s: api-web mount %+v", svc, m)
		}
		for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			h := p.HTTPGet.HTTPHeaders
			if len(h) != 1 || h[0].Name != "Authorization" || h[0].Value != "Basic cHJvYmU6eA==" {
				t.Errorf("%s: probe headers %+v; want the probe user's Authorization", svc, h)
			}
		}
	}
	sm := objs["ServiceMonitor/aw-agentwatch"].(*ServiceMonitor)
	ep := sm.Spec.Endpoints[0]
	if ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.CA.Secret == nil || ep.TLSConfig.CA.Secret.Name != "agentwatch-ca" ||
		ep.BasicAuth == nil || ep.BasicAuth.Password.Name != "scrape" {
		t.Errorf("ServiceMonitor endpoint %+v; want https with the CA and basic auth secrets", ep)
	}

	objs = render(t, "defaults").objects(t)
	c = load(objs)
	if c.HTTP.WebConfigFile != "" || !c.HTTP.InsecureListenAck || c.Responder.APIWebConfigFile != "" || !c.Responder.APIInsecureListenAck {
		t.Errorf("defaults: %+v; want no web config and both acknowledgements", c)
	}
	for _, svc := range services {
		c := deployment(t, objs, svc).Spec.Template.Spec.Containers[0]
		if mount(c, "web") != nil || len(c.ReadinessProbe.HTTPGet.HTTPHeaders) != 0 {
			t.Errorf("%s: web config mounted or probe headers set by default", svc)
		}
	}
}
