package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentwatch/agentwatch/internal/platform/syncbuf"
	"github.com/agentwatch/agentwatch/internal/tools/benchkit"
)

// BenchOptions say where the real services are and how often to start.
type BenchOptions struct {
	Brokers, ClickHouse []string
	// Runs is how often each service is started: the first on a new
	// topic set and database (ingest creates both), the rest restarts.
	Runs int
	// Keep leaves the scratch topics and database in place.
	Keep bool
	// ReadyTimeout bounds each wait for /readyz (default two minutes).
	ReadyTimeout time.Duration
}

// Services are the image's long-running services, in start order:
// ingest creates the topics the other two read.
var Services = []string{"ingest", "detector", "responder"}

// BenchReport is what Bench measured.
type BenchReport struct {
	Digest string
	Sizes  Sizes
	// Ready[service][run] is the time from exec to the first 200 of /readyz.
	Ready map[string][]time.Duration
}

// String is the report as a Markdown table.
func (r *BenchReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %s: %.1f MiB compressed, %.1f MiB uncompressed\n\n", r.Digest,
		float64(r.Sizes.Compressed)/(1<<20), float64(r.Sizes.Uncompressed)/(1<<20))
	fmt.Fprintf(&b, "| service | first start → /readyz | restarts → /readyz (each) |\n|---|---:|---|\n")
	for _, s := range Services {
		d := r.Ready[s]
		if len(d) == 0 {
			continue
		}
		var rest []string
		for _, x := range d[1:] {
			rest = append(rest, benchkit.Ms(x))
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s, benchkit.Ms(d[0]), strings.Join(rest, ", "))
	}
	return b.String()
}

// Bench unpacks img into rootfs (an empty directory) and starts each
// service from it as a container runtime would, minus the namespaces:
// chroot into rootfs, the image's user, working directory and
// environment, then exec. It measures the time from exec to a 200 from
// /readyz against the real Kafka and ClickHouse, on scratch topics and a
// scratch database it removes at the end. It needs root (chroot).
func Bench(ctx context.Context, img v1.Image, rootfs string, o BenchOptions, log *slog.Logger) (*BenchReport, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("image bench needs root: it runs the services with chroot into the unpacked image")
	}
	var partitions int
	benchkit.Defaults(&o.Brokers, &o.ClickHouse, &partitions)
	benchkit.Default(&o.Runs, 3)
	benchkit.Default(&o.ReadyTimeout, 2*time.Minute)
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	rep := &BenchReport{Digest: digest.String(), Ready: map[string][]time.Duration{}}
	if rep.Sizes, err = Size(img); err != nil {
		return nil, fmt.Errorf("image size: %w", err)
	}
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, err
	}
	if err := Extract(img, rootfs); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	uid, gid, err := parseUser(cf.Config.User)
	if err != nil {
		return nil, err
	}

	suffix := strconv.FormatInt(time.Now().UnixMilli(), 10)
	sc := benchkit.Scratch{Brokers: o.Brokers, ClickHouse: o.ClickHouse, Databases: []string{"bench_image_" + suffix}}
	// The responder's state topics too: their partition count follows the
	// scratch anomalies topic, so a shared default name would not fit.
	for _, t := range []string{"raw", "events", "deadletter", "anomalies", "responder_state", "responder_global"} {
		sc.Topics = append(sc.Topics, "bench_image_"+t+"_"+suffix)
	}
	if !o.Keep {
		defer sc.Remove(log, "image bench")
	}
	ports, err := freePorts(len(Services) + 1)
	if err != nil {
		return nil, err
	}
	cfgPath := "/etc/agentwatch/agentwatch.yaml"
	if err := os.MkdirAll(filepath.Join(rootfs, "etc", "agentwatch"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(rootfs, cfgPath), []byte(benchConfig(o, sc, suffix, ports[len(Services)])), 0o644); err != nil {
		return nil, err
	}

	for run := range o.Runs {
		var procs []*benchProc
		stopAll := func() error {
			var errs []error
			for _, p := range slices.Backward(procs) {
				errs = append(errs, p.stop())
			}
			return errors.Join(errs...)
		}
		for i, s := range Services {
			addr := "127.0.0.1:" + strconv.Itoa(ports[i])
			p, err := startChroot(rootfs, cf.Config, uid, gid, s, "run", "-c", cfgPath, "--http.addr", addr)
			if err != nil {
				_ = stopAll()
				return nil, err
			}
			procs = append(procs, p)
			d, err := waitReady(ctx, "http://"+addr+"/readyz", p, o.ReadyTimeout)
			if err != nil {
				_ = stopAll()
				return nil, fmt.Errorf("run %d: %s: %w\n%s", run+1, s, err, p.tail())
			}
			log.Info("ready", "service", s, "run", run+1, "after", d)
			rep.Ready[s] = append(rep.Ready[s], d)
		}
		if err := stopAll(); err != nil {
			return nil, fmt.Errorf("run %d: stop: %w", run+1, err)
		}
	}
	return rep, nil
}

// benchConfig is the configuration the services run with inside the
// image: the scratch names, absolute paths inside the image, JSON logs.
func benchConfig(o BenchOptions, sc benchkit.Scratch, suffix string, apiPort int) string {
	q := func(xs []string) string { return "[" + strings.Join(xs, ", ") + "]" }
	return fmt.Sprintf(`log: {level: info, format: json}
kafka:
  brokers: %s
  raw_topics: [%s]
  events_topic: %s
  dead_letter_topic: %s
  anomalies_topic: %s
  responder_state_topic: %s
  responder_global_topic: %s
  ingest_group: bench-image-ingest-%s
  detector_group: bench-image-detector-%s
  responder_group: bench-image-responder-%s
  partitions: 3
  replication_factor: 1
clickhouse:
  addr: %s
  database: %s
responder:
  state_dir: %s/responder
  api_addr: 127.0.0.1:%d
`, q(o.Brokers), sc.Topics[0], sc.Topics[1], sc.Topics[2], sc.Topics[3], sc.Topics[4], sc.Topics[5], suffix, suffix, suffix,
		q(o.ClickHouse), sc.Databases[0], StateDir, apiPort)
}

// parseUser reads a numeric "uid:gid" User, as Assemble writes it.
func parseUser(u string) (uid, gid uint32, err error) {
	a, b, ok := strings.Cut(u, ":")
	x, err1 := strconv.ParseUint(a, 10, 32)
	y, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("image user %q: want numeric uid:gid", u)
	}
	return uint32(x), uint32(y), nil
}

// freePorts returns n loopback ports free right now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// benchProc is one service started from the rootfs.
type benchProc struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

// Command returns the command that runs binary (a name in BinDir) from
// the unpacked image at rootfs as the image's config says: chroot, user,
// working directory, environment. Go's fork chroots, then sets the
// credentials, then changes directory: the order a container runtime
// follows.
func Command(rootfs string, c v1.Config, uid, gid uint32, binary string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(BinDir, binary), args...)
	cmd.Dir = c.WorkingDir
	cmd.Env = append(slices.Clone(c.Env), "HOME=/home/nonroot")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     rootfs,
		Credential: &syscall.Credential{Uid: uid, Gid: gid},
		Setpgid:    true,
	}
	return cmd
}

func startChroot(rootfs string, c v1.Config, uid, gid uint32, binary string, args ...string) (*benchProc, error) {
	p := &benchProc{cmd: Command(rootfs, c, uid, gid, binary, args...), out: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in the image: %w", binary, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to a minute, then kills.
func (p *benchProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within a minute of SIGTERM", filepath.Base(p.cmd.Path))
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		return p.err
	}
	if p.err != nil && ee.ExitCode() != 0 {
		return fmt.Errorf("%s exited with %v after SIGTERM\n%s", filepath.Base(p.cmd.Path), p.err, p.tail())
	}
	return nil
}

func (p *benchProc) tail() string {
	s := p.out.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// waitReady polls url every 10 ms until it answers 200, the process
// exits, or timeout; it returns the time since the process started.
func waitReady(ctx context.Context, url string, p *benchProc, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			return 0, fmt.Errorf("exited before ready: %v", p.err)
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%s not 200 within %s", url, timeout)
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
