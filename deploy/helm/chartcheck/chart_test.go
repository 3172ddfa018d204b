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
	k8slabels "k8s.io/apimachinery/pkg/labels"
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
responder: {replicas: 3, podAntiAffinity: required, persistence: {storageClass: fast-ssd, size: 10Gi}, sharedEvidence: {enabled: true, storageClass: nfs}, apiWebConfig: {existingSecret: agentwatch-api-web}}
config: {kafka: {brokers: [kafka-0.kafka:9093, kafka-1.kafka:9093]}}
`,
	"minimal": `
serviceAccount: {create: false}
networkPolicy: {enabled: false}
responder: {replicas: 1, podAntiAffinity: none, persistence: {enabled: false}}
`,
	// The responder's own affinity replaces the anti-affinity, and a shared
	// evidence claim made by the operator is mounted, not created.
	"responder-own-claims": `
responder: {affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [agentwatch]}]}]}}}, sharedEvidence: {enabled: true, existingClaim: evidence-rwx}}
`,
}

func values(t *testing.T, name string) map[string]any {
	t.Helper()
	return parseValues(t, cases[name])
}

func parseValues(t *testing.T, doc string) map[string]any {
	t.Helper()
	v, err := common.ReadValues([]byte(doc))
	if err != nil {
		t.Fatalf("values %q: %v", doc, err)
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
	files, err := renderFiles(t, values(t, name))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return splitRendered(t, files)
}

// splitRendered splits rendered files into their objects.
func splitRendered(t *testing.T, files map[string]string) rendered {
	t.Helper()
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

// renderFiles is `helm template` with vals: the rendered files by name.
func renderFiles(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Render(ch, rv)
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
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
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
			want := []string{"ConfigMap/aw-agentwatch", "StatefulSet/aw-agentwatch-responder", "Service/aw-agentwatch-responder-headless"}
			for _, s := range services {
				if s != "responder" {
					want = append(want, "Deployment/aw-agentwatch-"+s)
				}
				want = append(want, "Service/aw-agentwatch-"+s, "PodDisruptionBudget/aw-agentwatch-"+s)
			}
			if objs["Deployment/aw-agentwatch-responder"] != nil {
				t.Error("the responder is rendered as a Deployment too")
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

func statefulSet(t *testing.T, objs map[string]any, svc string) *appsv1.StatefulSet {
	t.Helper()
	s, ok := objs["StatefulSet/aw-agentwatch-"+svc].(*appsv1.StatefulSet)
	if !ok {
		t.Fatalf("no StatefulSet of %s", svc)
	}
	return s
}

// pod is the pod template of svc's workload: the responder's StatefulSet,
// the others' Deployments.
func pod(t *testing.T, objs map[string]any, svc string) corev1.PodTemplateSpec {
	t.Helper()
	if svc == "responder" {
		return statefulSet(t, objs, svc).Spec.Template
	}
	return deployment(t, objs, svc).Spec.Template
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
				ps := pod(t, objs, svc).Spec
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
				if svc != "responder" {
					d := deployment(t, objs, svc)
					if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
						t.Errorf("%s: strategy %s; want RollingUpdate", svc, d.Spec.Strategy.Type)
					}
				}
				if svc == "responder" {
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
		ps := pod(t, objs, svc).Spec
		c := ps.Containers[0]
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
		for _, v := range ps.Volumes {
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
		c := pod(t, render(t, "defaults").objects(t), svc).Spec.Containers[0]
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
	if hs := objs["Service/aw-agentwatch-responder-headless"].(*corev1.Service); selects(t, sm.Spec.Selector, hs.Labels) {
		t.Errorf("the ServiceMonitor selects the headless Service too (labels %v): the responders would be scraped twice", hs.Labels)
	}
	for _, svc := range services {
		podLabels := pod(t, objs, svc).Labels
		s := objs["Service/aw-agentwatch-"+svc].(*corev1.Service)
		if !matches(s.Spec.Selector, podLabels) {
			t.Errorf("Service %s selects %v; pods have %v", svc, s.Spec.Selector, podLabels)
		}
		if !selects(t, sm.Spec.Selector, s.Labels) {
			t.Errorf("the ServiceMonitor does not select Service %s (%v)", svc, s.Labels)
		}
		if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "http" }) {
			t.Errorf("Service %s has no port http for the ServiceMonitor", svc)
		}
		pdb := objs["PodDisruptionBudget/aw-agentwatch-"+svc].(*policyv1.PodDisruptionBudget)
		if !matches(pdb.Spec.Selector.MatchLabels, podLabels) || (pdb.Spec.MaxUnavailable == nil) == (pdb.Spec.MinAvailable == nil) {
			t.Errorf("PDB %s: selector %v, maxUnavailable %v, minAvailable %v; pods have %v, want one of the two bounds",
				svc, pdb.Spec.Selector.MatchLabels, pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable, podLabels)
		}
		np := objs["NetworkPolicy/aw-agentwatch-"+svc].(*networkingv1.NetworkPolicy)
		if !matches(np.Spec.PodSelector.MatchLabels, podLabels) {
			t.Errorf("NetworkPolicy %s selects %v; pods have %v", svc, np.Spec.PodSelector.MatchLabels, podLabels)
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
		c := pod(t, objs, svc).Spec.Containers[0]
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
		c := pod(t, objs, svc).Spec.Containers[0]
		if mount(c, "web") != nil || len(c.ReadinessProbe.HTTPGet.HTTPHeaders) != 0 {
			t.Errorf("%s: web config mounted or probe headers set by default", svc)
		}
	}
}

// selects reports whether sel selects an object with labels, with the
// matchExpressions the chart uses (Exists, DoesNotExist, In).
func selects(t *testing.T, sel metav1.LabelSelector, labels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(&sel)
	if err != nil {
		t.Fatalf("selector %+v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(k8slabels.Set(labels))
}

// responderCase is what each case asks of the responder's workload.
type responderCase struct {
	replicas     int32
	persistence  bool   // a claim per replica from volumeClaimTemplates
	storageClass string // of those claims
	size         string
	antiAffinity string // preferred, required, none, or own (responder.affinity)
	evidence     string // the shared evidence claim's name, "" without one
	evidenceMade bool   // the chart makes that claim
}

var responderCases = map[string]responderCase{
	"defaults":             {replicas: 2, persistence: true, size: "5Gi", antiAffinity: "preferred"},
	"everything":           {replicas: 3, persistence: true, storageClass: "fast-ssd", size: "10Gi", antiAffinity: "required", evidence: "aw-agentwatch-responder-evidence", evidenceMade: true},
	"minimal":              {replicas: 1, antiAffinity: "none"},
	"responder-own-claims": {replicas: 2, persistence: true, size: "5Gi", antiAffinity: "own", evidence: "evidence-rwx"},
}

// TestResponderStatefulSet checks the shape that lets several responders
// run side by side: N replicas of a StatefulSet, each with a volume of its
// own at responder.state_dir, replaced one at a time, spread over nodes, at
// least one kept through voluntary evictions, the API Service spreading
// requests over all of them, and the optional shared evidence volume at
// responder.evidence_dir.
func TestResponderStatefulSet(t *testing.T) {
	if len(responderCases) != len(cases) {
		t.Fatalf("responderCases covers %d of the %d cases", len(responderCases), len(cases))
	}
	for name, want := range responderCases {
		t.Run(name, func(t *testing.T) {
			objs := render(t, name).objects(t)
			var cfg struct {
				Responder struct {
					StateDir    string `json:"state_dir"`
					EvidenceDir string `json:"evidence_dir"`
				} `json:"responder"`
			}
			cm := objs["ConfigMap/aw-agentwatch"].(*corev1.ConfigMap)
			if err := yaml.Unmarshal([]byte(cm.Data["agentwatch.yaml"]), &cfg); err != nil {
				t.Fatal(err)
			}
			ss := statefulSet(t, objs, "responder")
			spec := ss.Spec
			if spec.Replicas == nil || *spec.Replicas != want.replicas {
				t.Errorf("replicas %v; want %d", spec.Replicas, want.replicas)
			}
			if spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
				t.Errorf("updateStrategy %s; want RollingUpdate", spec.UpdateStrategy.Type)
			}
			if ru := spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition != 0 {
				t.Errorf("rollingUpdate.partition %d leaves pods on the old version", *ru.Partition)
			}
			if spec.PodManagementPolicy != appsv1.ParallelPodManagement {
				t.Errorf("podManagementPolicy %s; want Parallel", spec.PodManagementPolicy)
			}
			if spec.MinReadySeconds < 1 {
				t.Errorf("minReadySeconds %d; want time for the rebalance", spec.MinReadySeconds)
			}
			podLabels := spec.Template.Labels
			if spec.Selector == nil || !selects(t, *spec.Selector, podLabels) {
				t.Errorf("selector %+v does not select the pods' labels %v", spec.Selector, podLabels)
			}

			// The governing headless Service.
			hs, ok := objs["Service/"+spec.ServiceName].(*corev1.Service)
			if !ok || hs.Spec.ClusterIP != corev1.ClusterIPNone || !selects(t, metav1.LabelSelector{MatchLabels: hs.Spec.Selector}, podLabels) {
				t.Errorf("serviceName %q: %+v; want a rendered headless Service selecting the pods", spec.ServiceName, hs)
			}

			// Requests go to any replica.
			api := objs["Service/aw-agentwatch-responder"].(*corev1.Service)
			if api.Spec.ClusterIP == corev1.ClusterIPNone || api.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
				t.Errorf("API Service: clusterIP %q, sessionAffinity %s; want one virtual IP spreading over the replicas", api.Spec.ClusterIP, api.Spec.SessionAffinity)
			}
			for k := range api.Spec.Selector {
				if strings.HasPrefix(k, "statefulset.kubernetes.io/") || strings.HasPrefix(k, "apps.kubernetes.io/") {
					t.Errorf("API Service selects by %s: one pod only", k)
				}
			}
			if !selects(t, metav1.LabelSelector{MatchLabels: api.Spec.Selector}, podLabels) {
				t.Errorf("API Service selects %v; pods have %v", api.Spec.Selector, podLabels)
			}

			// At least one responder through voluntary evictions.
			pdb := objs["PodDisruptionBudget/aw-agentwatch-responder"].(*policyv1.PodDisruptionBudget)
			if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) || pdb.Spec.MaxUnavailable != nil {
				t.Errorf("PDB: minAvailable %v, maxUnavailable %v; want minAvailable 1 alone", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
			}

			// State: one claim per replica, or an emptyDir for trials.
			ps := spec.Template.Spec
			c := ps.Containers[0]
			if m := mount(c, "state"); m == nil || m.MountPath != cfg.Responder.StateDir || m.ReadOnly {
				t.Errorf("state mount %+v; want it writable at responder.state_dir %q", m, cfg.Responder.StateDir)
			}
			stateVolume := slices.IndexFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == "state" })
			if want.persistence {
				if len(spec.VolumeClaimTemplates) != 1 {
					t.Fatalf("%d volumeClaimTemplates; want 1 (state)", len(spec.VolumeClaimTemplates))
				}
				vct := spec.VolumeClaimTemplates[0]
				size := vct.Spec.Resources.Requests[corev1.ResourceStorage]
				if vct.Name != "state" || !slices.Equal(vct.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) || size.String() != want.size {
					t.Errorf("volumeClaimTemplate %s: access %v, size %s; want state, ReadWriteOnce, %s", vct.Name, vct.Spec.AccessModes, size.String(), want.size)
				}
				if got := ptrString(vct.Spec.StorageClassName); got != want.storageClass {
					t.Errorf("volumeClaimTemplate storageClassName %q; want %q", got, want.storageClass)
				}
				if stateVolume >= 0 {
					t.Errorf("a pod volume named state (%+v) hides the claim template", ps.Volumes[stateVolume])
				}
				rp := spec.PersistentVolumeClaimRetentionPolicy
				if rp == nil || rp.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || rp.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
					t.Errorf("persistentVolumeClaimRetentionPolicy %+v; want Retain on delete and scale-down (the claims hold evidence)", rp)
				}
			} else {
				if len(spec.VolumeClaimTemplates) != 0 {
					t.Errorf("volumeClaimTemplates %v with persistence off", spec.VolumeClaimTemplates)
				}
				if stateVolume < 0 || ps.Volumes[stateVolume].EmptyDir == nil {
					t.Errorf("persistence off: state volume %v; want an emptyDir", ps.Volumes)
				}
			}

			// Spread over nodes.
			aff := ps.Affinity
			term := func(tm corev1.PodAffinityTerm) {
				if tm.TopologyKey != "kubernetes.io/hostname" || tm.LabelSelector == nil || !selects(t, *tm.LabelSelector, podLabels) {
					t.Errorf("anti-affinity term %+v; want the responder pods by hostname", tm)
				}
			}
			switch want.antiAffinity {
			case "preferred":
				if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 || len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
					t.Fatalf("affinity %+v; want one preferred pod anti-affinity", aff)
				}
				term(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm)
			case "required":
				if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 0 {
					t.Fatalf("affinity %+v; want one required pod anti-affinity", aff)
				}
				term(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0])
			case "none":
				if aff != nil {
					t.Errorf("affinity %+v; want none", aff)
				}
			case "own":
				if aff == nil || aff.NodeAffinity == nil || aff.PodAntiAffinity != nil {
					t.Errorf("affinity %+v; want responder.affinity as given, in place of the anti-affinity", aff)
				}
			}

			// The shared evidence volume.
			ev := slices.IndexFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == "evidence" })
			pvc, made := objs["PersistentVolumeClaim/aw-agentwatch-responder-evidence"].(*corev1.PersistentVolumeClaim)
			if want.evidence == "" {
				if ev >= 0 || mount(c, "evidence") != nil || cfg.Responder.EvidenceDir != "" || made {
					t.Errorf("no shared evidence asked, but volume %d, mount %+v, evidence_dir %q, claim made %v", ev, mount(c, "evidence"), cfg.Responder.EvidenceDir, made)
				}
				return
			}
			if ev < 0 || ps.Volumes[ev].PersistentVolumeClaim == nil || ps.Volumes[ev].PersistentVolumeClaim.ClaimName != want.evidence {
				t.Fatalf("evidence volume %v; want claim %s", ps.Volumes, want.evidence)
			}
			m := mount(c, "evidence")
			if m == nil || cfg.Responder.EvidenceDir == "" || m.MountPath != cfg.Responder.EvidenceDir || m.ReadOnly {
				t.Errorf("evidence mount %+v; want it writable at responder.evidence_dir %q", m, cfg.Responder.EvidenceDir)
			}
			if strings.HasPrefix(cfg.Responder.EvidenceDir+"/", cfg.Responder.StateDir+"/") {
				t.Errorf("evidence_dir %q is inside the per-replica state_dir %q", cfg.Responder.EvidenceDir, cfg.Responder.StateDir)
			}
			if made != want.evidenceMade {
				t.Fatalf("shared evidence claim made by the chart: %v; want %v", made, want.evidenceMade)
			}
			if made && (!slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}) ||
				pvc.Annotations["helm.sh/resource-policy"] != "keep" || ptrString(pvc.Spec.StorageClassName) != "nfs") {
				t.Errorf("shared evidence claim: access %v, annotations %v, class %q; want ReadWriteMany, kept, nfs",
					pvc.Spec.AccessModes, pvc.Annotations, ptrString(pvc.Spec.StorageClassName))
			}
		})
	}
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// TestNothingPerReplica renders the chart with 1, 2 and 5 responders: the
// ConfigMap and the pod template must be the same, since every replica
// reads the one file and runs the one template (what differs per replica,
// its volume, comes from the claim template).
func TestNothingPerReplica(t *testing.T) {
	var firstCM, firstPod string
	for i, n := range []int{1, 2, 5} {
		objs := renderValuesObjects(t, fmt.Sprintf("responder: {replicas: %d}", n))
		if got := *statefulSet(t, objs, "responder").Spec.Replicas; got != int32(n) {
			t.Fatalf("replicas %d rendered as %d", n, got)
		}
		cm := objs["ConfigMap/aw-agentwatch"].(*corev1.ConfigMap).Data["agentwatch.yaml"]
		tmpl, err := yaml.Marshal(pod(t, objs, "responder"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstCM, firstPod = cm, string(tmpl)
			continue
		}
		if cm != firstCM {
			t.Errorf("replicas %d changes the ConfigMap:\n%s\nvs\n%s", n, cm, firstCM)
		}
		if string(tmpl) != firstPod {
			t.Errorf("replicas %d changes the pod template", n)
		}
	}
}

func renderValuesObjects(t *testing.T, doc string) map[string]any {
	t.Helper()
	files, err := renderFiles(t, parseValues(t, doc))
	if err != nil {
		t.Fatalf("render %q: %v", doc, err)
	}
	return splitRendered(t, files).objects(t)
}

// TestRefusedValues: values the chart cannot honour fail the render with
// a message naming the value, instead of rendering something else.
func TestRefusedValues(t *testing.T) {
	for doc, wantErr := range map[string]string{
		"responder: {replicas: 0}":                "responder.replicas is 0",
		"responder: {podAntiAffinity: sometimes}": `responder.podAntiAffinity is "sometimes"`,
		"detector: {replicas: 0}":                 "detector.replicas is 0",
	} {
		_, err := renderFiles(t, parseValues(t, doc))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: render error %v; want one containing %q", doc, err, wantErr)
		}
	}
}
