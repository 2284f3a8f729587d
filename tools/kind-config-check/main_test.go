package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckAcceptsValidConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := Check(raw)
	if err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if cluster.Name != "dra-demo" || len(cluster.Nodes) != 2 {
		t.Fatalf("decoded wrongly: name %q, %d nodes", cluster.Name, len(cluster.Nodes))
	}
	if !cluster.FeatureGates["DRAConsumableCapacity"] {
		t.Fatal("featureGates not decoded")
	}
	if got := cluster.Nodes[1].ExtraMounts[0].ContainerPath; got != "/etc/dra" {
		t.Fatalf("extraMounts not decoded: %q", got)
	}
}

func TestCheckRejects(t *testing.T) {
	cases := map[string]string{
		"unknown-top-level-field.yaml": "field featureGate not found",
		"unknown-mount-field.yaml":     "field readonly not found",
		"no-control-plane.yaml":        "at least one control-plane",
		"wrong-api-version.yaml":       "unknown apiVersion",
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Check(raw)
			if err == nil {
				t.Fatalf("%s accepted, want error containing %q", file, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: error %q does not contain %q", file, err, want)
			}
		})
	}
}

func TestCheckRejectsInlineCases(t *testing.T) {
	cases := map[string]string{
		"bad propagation": "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraMounts:\n  - {hostPath: /a, containerPath: /b, propagation: Sideways}\n",
		"bad role":        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: master\n",
		"bad name":        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: DRA_Demo\n",
		"wrong kind":      "kind: Config\napiVersion: kind.x-k8s.io/v1alpha4\n",
		"two documents":   "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n---\nkind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n",
		"wrong type":      "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nfeatureGates:\n  DRAAdminAccess: maybe\n",
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Check([]byte(doc)); err == nil {
				t.Fatalf("accepted:\n%s", doc)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(nil, strings.NewReader(""), &out, &errOut); code != 2 {
		t.Fatalf("no args: exit %d, want 2", code)
	}
	if code := run([]string{filepath.Join("testdata", "valid.yaml")}, nil, &out, &errOut); code != 0 {
		t.Fatalf("valid file: exit %d, stderr %s", code, errOut.String())
	}
	errOut.Reset()
	code := run([]string{filepath.Join("testdata", "valid.yaml"), filepath.Join("testdata", "unknown-mount-field.yaml")}, nil, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "readonly") {
		t.Fatalf("mixed files: exit %d, stderr %q", code, errOut.String())
	}
	doc := "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
	if code := run([]string{"-"}, strings.NewReader(doc), &out, &errOut); code != 0 {
		t.Fatalf("stdin: exit %d, stderr %s", code, errOut.String())
	}
}
