// Command builder writes Ballast's images as OCI layouts from binaries built
// beforehand (`make image` cross-compiles them), and pushes them when asked.
// No container engine is involved.
//
//	go run ./build/image/builder --version v0.1.0 --revision $(git rev-parse HEAD) \
//	    --bin-dir bin --out bin/images [--push]
//
// The binary of cmd/<name> for linux/<arch> is read from <bin-dir>/linux-<arch>/<name>.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ballast-k8s/ballast/build/image"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image builder:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("builder", flag.ContinueOnError)
	repo := fs.String("repo", image.DefaultRepo, "registry and path of the image names")
	version := fs.String("version", "", "image tag; the version the binaries were built with")
	revision := fs.String("revision", "", "git commit of the build")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms")
	binDir := fs.String("bin-dir", "bin", "directory holding linux-<arch>/<binary>")
	out := fs.String("out", "bin/images", "directory of the OCI layouts, one per image")
	push := fs.Bool("push", os.Getenv("IMAGE_PUSH") == "1", "also push to the registry (default from IMAGE_PUSH=1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *version == "" || *revision == "" {
		return fmt.Errorf("--version and --revision are required")
	}
	var ps []v1.Platform
	for _, s := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		ps = append(ps, *p)
	}
	opts := image.Options{
		Repo: *repo, Version: *version, Revision: *revision, Platforms: ps,
		Binary: func(s image.Spec, p v1.Platform) string {
			return filepath.Join(*binDir, p.OS+"-"+p.Architecture, s.Binary)
		},
	}
	for _, spec := range image.Images {
		idx, err := image.Build(spec, opts)
		if err != nil {
			return err
		}
		ref := image.Ref(*repo, spec, *version)
		dir := filepath.Join(*out, spec.Name)
		if err := image.WriteLayout(dir, ref, idx); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s@%s -> %s (%s)\n", ref, d, dir, *platforms)
		if *push {
			if err := image.Push(context.Background(), ref, idx); err != nil {
				return fmt.Errorf("pushing %s: %w", ref, err)
			}
			fmt.Printf("pushed %s\n", ref)
		}
	}
	return nil
}
