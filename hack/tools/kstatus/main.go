// Command kstatus reads one Kubernetes object (JSON or YAML) on stdin and prints what the kstatus
// library (sigs.k8s.io/cli-utils/pkg/kstatus/status) - the code Flux and kpt use to decide whether a
// resource is ready - computes for it, as one JSON line: {"status": "...", "message": "...",
// "conditions": [...]}. Exit code 0 on success, 2 when the input is not a usable object.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type result struct {
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	doc, err := yaml.YAMLToJSON(raw) // JSON is YAML too, so this accepts both
	if err != nil {
		return fmt.Errorf("parse object: %w", err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(doc); err != nil {
		return fmt.Errorf("decode object: %w", err)
	}
	res, err := status.Compute(obj)
	if err != nil {
		return fmt.Errorf("compute status of %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	conditions := res.Conditions
	if conditions == nil {
		conditions = []status.Condition{}
	}
	return json.NewEncoder(out).Encode(result{Status: res.Status.String(), Message: res.Message, Conditions: conditions})
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help") {
		fmt.Fprintln(os.Stderr, "usage: kstatus < object.yaml   (prints the kstatus result as JSON)")
		return
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(2)
	}
}
