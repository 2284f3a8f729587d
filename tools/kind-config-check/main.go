// Command kind-config-check decodes kind cluster configuration files the way
// kind itself does, so that a configuration rendered by the dra_cluster role
// can be checked on machines where kind cannot run.
//
// For each file named on the command line (or "-" for stdin) it:
//
//  1. reads apiVersion and kind, and accepts only kind.x-k8s.io/v1alpha4 Cluster;
//  2. decodes the document into sigs.k8s.io/kind/pkg/apis/config/v1alpha4.Cluster
//     with go.yaml.in/yaml/v3 and KnownFields(true): the decoder and setting
//     kind v0.33.0 uses (pkg/internal/apis/config/encoding/load.go), so an
//     unknown or misspelt field fails exactly as `kind create cluster --config`
//     would fail;
//  3. applies kind's public defaulting (v1alpha4.SetDefaultsCluster) and then a
//     few structural rules that kind enforces in its internal validation
//     (cluster name, node roles, at least one control-plane node, node image).
//
// It exits 0 when every file passes, 1 when a file fails, 2 on usage errors.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	yaml "go.yaml.in/yaml/v3"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

const (
	wantAPIVersion = "kind.x-k8s.io/v1alpha4"
	wantKind       = "Cluster"
)

// clusterNameRE is the rule kind applies to cluster names.
var clusterNameRE = regexp.MustCompile(`^[a-z0-9.-]+$`)

type typeMeta struct {
	Kind       string `yaml:"kind"`
	APIVersion string `yaml:"apiVersion"`
}

// Check decodes raw strictly into kind's v1alpha4 Cluster type and validates it.
func Check(raw []byte) (*v1alpha4.Cluster, error) {
	var tm typeMeta
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("cannot read kind / apiVersion: %w", err)
	}
	if tm.APIVersion != wantAPIVersion {
		return nil, fmt.Errorf("unknown apiVersion %q (want %q)", tm.APIVersion, wantAPIVersion)
	}
	if tm.Kind != wantKind {
		return nil, fmt.Errorf("unknown kind %q for apiVersion %s (want %q)", tm.Kind, tm.APIVersion, wantKind)
	}

	cluster := &v1alpha4.Cluster{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cluster); err != nil {
		return nil, fmt.Errorf("unable to decode config: %w", err)
	}
	// kind reads a single document; a second one would be ignored silently
	// by kind, which is never what the author meant.
	var extra interface{}
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document: kind reads only the first")
	}

	v1alpha4.SetDefaultsCluster(cluster)
	if err := validate(cluster); err != nil {
		return nil, err
	}
	return cluster, nil
}

func validate(c *v1alpha4.Cluster) error {
	var errs []error
	// kind defaults an empty name to "kind" at creation time.
	if c.Name != "" && !clusterNameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("%q is not a valid cluster name (must match %s)", c.Name, clusterNameRE))
	}
	controlPlanes := 0
	for i, n := range c.Nodes {
		switch n.Role {
		case v1alpha4.ControlPlaneRole:
			controlPlanes++
		case v1alpha4.WorkerRole:
		default:
			errs = append(errs, fmt.Errorf("node %d: %q is not a valid node role", i, n.Role))
		}
		if n.Image == "" {
			errs = append(errs, fmt.Errorf("node %d: image is a required field", i))
		}
		for j, m := range n.ExtraMounts {
			if m.HostPath == "" || m.ContainerPath == "" {
				errs = append(errs, fmt.Errorf("node %d: extraMounts[%d] needs hostPath and containerPath", i, j))
			}
		}
	}
	if controlPlanes < 1 {
		errs = append(errs, errors.New("must have at least one control-plane node"))
	}
	return errors.Join(errs...)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: kind-config-check FILE... (\"-\" reads stdin)")
		return 2
	}
	status := 0
	for _, path := range args {
		var raw []byte
		var err error
		if path == "-" {
			raw, err = io.ReadAll(stdin)
		} else {
			raw, err = os.ReadFile(path)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
			status = 1
			continue
		}
		cluster, err := Check(raw)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
			status = 1
			continue
		}
		workers := 0
		for _, n := range cluster.Nodes {
			if n.Role == v1alpha4.WorkerRole {
				workers++
			}
		}
		fmt.Fprintf(stdout, "%s: ok (name %q, %d nodes, %d workers, %d feature gates, %d runtimeConfig entries)\n",
			path, cluster.Name, len(cluster.Nodes), workers, len(cluster.FeatureGates), len(cluster.RuntimeConfig))
	}
	return status
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
