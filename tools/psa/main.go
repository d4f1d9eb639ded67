// Command psa checks Kubernetes manifests against a Pod Security Standards level with the
// upstream k8s.io/pod-security-admission policy library, offline: the same checks the
// API server's PodSecurity admission runs, without a cluster.
//
// Usage: psa [-level restricted] [-versions 1.29,latest] FILE... (or - for stdin)
//
// Every pod-bearing object (Pod, PodTemplate, ReplicationController, ReplicaSet,
// Deployment, DaemonSet, StatefulSet, Job, CronJob) is evaluated at each version; other
// kinds are listed as skipped. Exit 0 when every pod passes, 1 when one fails or when no
// pod-bearing object was found at all (a check that saw nothing proves nothing), 2 for a
// usage or parse error.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

type header struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
}

// podSpecOf returns the pod metadata and spec that PodSecurity admission would evaluate
// for this object (for controllers: their pod template), or ok=false for other kinds.
func podSpecOf(kind string, doc []byte) (*metav1.ObjectMeta, *corev1.PodSpec, bool, error) {
	var (
		meta *metav1.ObjectMeta
		spec *corev1.PodSpec
		err  error
	)
	template := func(t *corev1.PodTemplateSpec) { meta, spec = &t.ObjectMeta, &t.Spec }
	switch kind {
	case "Pod":
		var o corev1.Pod
		err = json.Unmarshal(doc, &o)
		meta, spec = &o.ObjectMeta, &o.Spec
	case "PodTemplate":
		var o corev1.PodTemplate
		err = json.Unmarshal(doc, &o)
		template(&o.Template)
	case "ReplicationController":
		var o corev1.ReplicationController
		err = json.Unmarshal(doc, &o)
		if o.Spec.Template == nil {
			o.Spec.Template = &corev1.PodTemplateSpec{}
		}
		template(o.Spec.Template)
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		err = json.Unmarshal(doc, &o)
		template(&o.Spec.Template)
	case "Deployment":
		var o appsv1.Deployment
		err = json.Unmarshal(doc, &o)
		template(&o.Spec.Template)
	case "DaemonSet":
		var o appsv1.DaemonSet
		err = json.Unmarshal(doc, &o)
		template(&o.Spec.Template)
	case "StatefulSet":
		var o appsv1.StatefulSet
		err = json.Unmarshal(doc, &o)
		template(&o.Spec.Template)
	case "Job":
		var o batchv1.Job
		err = json.Unmarshal(doc, &o)
		template(&o.Spec.Template)
	case "CronJob":
		var o batchv1.CronJob
		err = json.Unmarshal(doc, &o)
		template(&o.Spec.JobTemplate.Spec.Template)
	default:
		return nil, nil, false, nil
	}
	return meta, spec, true, err
}

func readDocs(name string) ([][]byte, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

func main() {
	levelFlag := flag.String("level", "restricted", "Pod Security level: baseline or restricted")
	versionsFlag := flag.String("versions", "latest", "comma-separated policy versions, e.g. 1.29,latest")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: psa [-level restricted] [-versions 1.29,latest] FILE... (- for stdin)")
		os.Exit(2)
	}
	level, err := api.ParseLevel(*levelFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "psa:", err)
		os.Exit(2)
	}
	var versions []api.Version
	for _, v := range strings.Split(*versionsFlag, ",") {
		parsed, err := api.ParseVersion(strings.TrimSpace(v))
		if err != nil {
			fmt.Fprintln(os.Stderr, "psa:", err)
			os.Exit(2)
		}
		versions = append(versions, parsed)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "psa:", err)
		os.Exit(2)
	}

	pods, failed := 0, 0
	for _, name := range flag.Args() {
		docs, err := readDocs(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "psa: %s: %v\n", name, err)
			os.Exit(2)
		}
		for _, raw := range docs {
			doc, err := yaml.YAMLToJSON(raw)
			if err != nil {
				fmt.Fprintf(os.Stderr, "psa: %s: %v\n", name, err)
				os.Exit(2)
			}
			var h header
			if err := json.Unmarshal(doc, &h); err != nil {
				fmt.Fprintf(os.Stderr, "psa: %s: %v\n", name, err)
				os.Exit(2)
			}
			if h.Kind == "" {
				continue // an empty document (e.g. a template rendered to nothing)
			}
			what := fmt.Sprintf("%s/%s", h.Kind, h.Metadata.Name)
			meta, spec, ok, err := podSpecOf(h.Kind, doc)
			if err != nil {
				fmt.Fprintf(os.Stderr, "psa: %s: %s: %v\n", name, what, err)
				os.Exit(2)
			}
			if !ok {
				fmt.Printf("skip %s (no pod spec)\n", what)
				continue
			}
			pods++
			for _, version := range versions {
				lv := api.LevelVersion{Level: level, Version: version}
				result := policy.AggregateCheckResults(evaluator.EvaluatePod(lv, meta, spec))
				if result.Allowed {
					fmt.Printf("pass %s %s\n", what, lv.String())
					continue
				}
				failed++
				fmt.Printf("FAIL %s %s: %s\n", what, lv.String(), result.ForbiddenDetail())
			}
		}
	}
	if pods == 0 {
		fmt.Println("FAIL no pod-bearing object found")
		os.Exit(1)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
