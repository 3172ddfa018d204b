package doccheck

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDeployDocCommands runs the trial of docs/deploy.md: a throwaway PKI,
// the responder's keys, secrets in files and a production configuration
// that config show must accept with every secret masked. It needs openssl
// (deploy/tls.sh) and no service.
func TestDeployDocCommands(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed by deploy/tls.sh: apt-get install openssl")
	}
	root := moduleRoot(t)
	bin := buildCommands(t, root, "./cmd/ingest", "./cmd/responder")
	out := Run(t, root, 2*time.Minute,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"AGENTWATCH_CONFIG_FILE=")
	if strings.Contains(out, "from-vault") {
		t.Fatalf("a secret reached the output:\n%s", out)
	}
	t.Logf("output:\n%s", out)
}
