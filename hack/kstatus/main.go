// kstatus reads one live object through a kubeconfig (a dynamic client) and prints what
// sigs.k8s.io/cli-utils/pkg/kstatus computes for it, the library Argo CD's and Flux's health
// checks and `kubectl`-adjacent tools use, as one JSON line:
//
//	{"status":"InProgress","message":"..."}
//
// Usage: kstatus [-kubeconfig FILE] [-group G] [-version V] [-resource R] -namespace NS NAME
// (the resource defaults to trainingjobs.v1alpha1.training.forecast.dev). With -f FILE (or -f -)
// it reads the object from a JSON or YAML file instead of the API server.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type output struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	group := flag.String("group", "training.forecast.dev", "API group")
	version := flag.String("version", "v1alpha1", "API version")
	resource := flag.String("resource", "trainingjobs", "resource (plural)")
	namespace := flag.String("namespace", "default", "namespace")
	file := flag.String("f", "", "read the object from this file (- for stdin) instead of the API server")
	flag.Parse()
	obj, err := read(*kubeconfig, schema.GroupVersionResource{Group: *group, Version: *version, Resource: *resource}, *namespace, *file, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(2)
	}
	res, err := status.Compute(obj)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: compute:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(output{Status: res.Status.String(), Message: res.Message}); err != nil {
		os.Exit(1)
	}
}

func read(kubeconfig string, gvr schema.GroupVersionResource, namespace, file string, args []string) (*unstructured.Unstructured, error) {
	if file != "" {
		var data []byte
		var err error
		if file == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, err
		}
		doc, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(doc); err != nil { // numbers as int64, as the dynamic client reads them
			return nil, err
		}
		return u, nil
	}
	if len(args) != 1 {
		return nil, fmt.Errorf("want exactly one object name, got %d", len(args))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return client.Resource(gvr).Namespace(namespace).Get(ctx, args[0], metav1.GetOptions{})
}
