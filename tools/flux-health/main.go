// Command flux-health prints what Flux's own CEL health check evaluator
// (github.com/fluxcd/pkg/runtime/cel, as kustomize-controller runs healthCheckExprs)
// computes for a Kubernetes object given as JSON on standard input. The expressions come
// from a Kustomization's `spec.healthCheckExprs` entry in the YAML file named by the
// first argument (the first entry whose kind matches the object's). Output: one JSON line
// with the status ("InProgress", "Current", "Failed") and message.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type kustomization struct {
	Spec struct {
		HealthCheckExprs []kustomize.CustomHealthCheck `json:"healthCheckExprs"`
	} `json:"spec"`
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) != 2 {
		fail(fmt.Errorf("usage: flux-health KUSTOMIZATION.yaml < object.json"))
	}
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var k kustomization
	// Not strict: the rest of the Kustomization (apiVersion, kind, spec.wait) is not needed.
	if err := yaml.Unmarshal(text, &k); err != nil {
		fail(fmt.Errorf("%s: %w", os.Args[1], err))
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// Unstructured's own decoder keeps integers as int64, as Flux's evaluator expects.
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(input); err != nil {
		fail(fmt.Errorf("stdin is not a JSON object: %w", err))
	}
	for _, check := range k.Spec.HealthCheckExprs {
		if check.Kind != u.GetKind() || check.APIVersion != u.GetAPIVersion() {
			continue
		}
		evaluator, err := cel.NewStatusEvaluator(&check.HealthCheckExpressions)
		if err != nil {
			fail(err)
		}
		result, err := evaluator.Evaluate(context.Background(), u)
		if err != nil {
			fail(err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(verdict{result.Status.String(), result.Message}); err != nil {
			fail(err)
		}
		return
	}
	fail(fmt.Errorf("no healthCheckExprs entry for %s %s", u.GetAPIVersion(), u.GetKind()))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "flux-health:", err)
	os.Exit(1)
}
