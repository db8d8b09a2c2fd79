// Command kstatus prints what the kstatus library (sigs.k8s.io/cli-utils, as used by
// Flux and kpt) computes for Kubernetes objects given as JSON on standard input: one
// object, or a JSON array of objects. Output: one JSON line per object, with the
// status ("InProgress", "Current", "Failed", ...) and kstatus's message.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var objects []json.RawMessage
	if err := json.Unmarshal(input, &objects); err != nil {
		objects = []json.RawMessage{input}
	}
	out := json.NewEncoder(os.Stdout)
	for _, object := range objects {
		// Unstructured's own decoder keeps integers as int64, as kstatus expects.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(object); err != nil {
			fail(fmt.Errorf("stdin is neither a JSON object nor an array of objects: %w", err))
		}
		result, err := status.Compute(u)
		if err != nil {
			fail(fmt.Errorf("%s: %w", u.GetName(), err))
		}
		if err := out.Encode(verdict{u.GetName(), result.Status.String(), result.Message}); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
