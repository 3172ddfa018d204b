// Command imagebuild builds agentwatch's container image without a Docker
// daemon, and measures it:
//
//	imagebuild build --out dist/agentwatch.oci.tar   (make image)
//	imagebuild bench --image dist/agentwatch.oci.tar (make bench-image)
//
// It is a separate command so that go-containerregistry stays out of the
// product binaries; see internal/tools/image and docs/packaging.md.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/tools/image"
)

func main() { cli.Main(newRoot()) }

func newRoot() *cobra.Command {
	root := cli.NewRoot("imagebuild", "Build and measure agentwatch's container image without a Docker daemon",
		`imagebuild builds the four agentwatch binaries static for Linux and writes them,
with the CA bundle and a non-root user, as a reproducible OCI image archive
(docs/packaging.md). "imagebuild bench" unpacks an image and measures the time
from start to /readyz of each service against the real Kafka and ClickHouse.`)
	root.AddCommand(buildCommand(), benchCommand())
	return root
}

func buildCommand() *cobra.Command {
	var o image.Options
	var out, format, ref string
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the image into an OCI (or docker save) archive",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o, err := image.Defaults(ctx, o)
			if err != nil {
				return err
			}
			tmp, err := os.MkdirTemp("", "imagebuild-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			start := time.Now()
			bins, err := image.BuildBinaries(ctx, o, tmp)
			if err != nil {
				return err
			}
			img, err := image.Assemble(o, bins)
			if err != nil {
				return err
			}
			if ref == "" {
				ref = "agentwatch:" + image.Tag(o.Version)
			}
			if err := image.Write(img, out, format, ref); err != nil {
				return err
			}
			digest, err := img.Digest()
			if err != nil {
				return err
			}
			sizes, err := image.Size(img)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  %s (linux/%s, version %s, commit %s, created %s)\n", out, ref, digest, o.Arch, o.Version, o.Commit, o.Created.Format(time.RFC3339))
			fmt.Fprintf(cmd.OutOrStdout(), "size: %s compressed, %s uncompressed; built in %s\n", mib(sizes.Compressed), mib(sizes.Uncompressed), time.Since(start).Round(time.Second))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", filepath.Join("dist", "agentwatch.oci.tar"), "archive to write")
	f.StringVar(&format, "format", "oci", "archive format: oci (OCI image layout: podman load, skopeo, docker load on Docker 25+) or docker (docker save format)")
	f.StringVar(&ref, "ref", "", "image name inside the archive (default agentwatch:VERSION)")
	f.StringVar(&o.Root, "root", ".", "the module's root directory")
	f.StringVar(&o.Version, "version", "", "version to stamp (default git describe --tags --always --dirty)")
	f.StringVar(&o.Commit, "commit", "", "commit to stamp (default git rev-parse HEAD)")
	f.StringVar(&o.Source, "source", image.DefaultSource, "org.opencontainers.image.source label")
	f.StringVar(&o.Arch, "arch", "", "GOARCH to build for (default the host's)")
	f.StringVar(&o.CACerts, "ca-certs", image.CACertsPath, "CA bundle to copy into the image (Debian's ca-certificates)")
	return cmd
}

func benchCommand() *cobra.Command {
	var b image.BenchOptions
	var file string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Unpack an image and time each service from start to /readyz against the real Kafka and ClickHouse (needs root for chroot)",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l := config.Log{Level: "warn", Format: "text"}
			if cli.Verbose(cmd) {
				l.Level = "info"
			}
			tmp, err := os.MkdirTemp("", "imagebench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			img, err := image.Read(file, filepath.Join(tmp, "layout"))
			if err != nil {
				return err
			}
			rep, err := image.Bench(cmd.Context(), img, filepath.Join(tmp, "rootfs"), b, cli.Logger(cmd.ErrOrStderr(), l, "bench"))
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), rep.String())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "image", filepath.Join("dist", "agentwatch.oci.tar"), "image archive (imagebuild build)")
	f.StringSliceVar(&b.Brokers, "brokers", []string{"127.0.0.1:9092"}, "Kafka brokers, comma-separated")
	f.StringSliceVar(&b.ClickHouse, "clickhouse", []string{"127.0.0.1:9000"}, "ClickHouse native addresses, comma-separated")
	f.IntVar(&b.Runs, "runs", 3, "start every service this many times (the first on a new topic set and database, the rest restarts)")
	f.BoolVar(&b.Keep, "keep", false, "keep the scratch topics and database")
	return cmd
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
