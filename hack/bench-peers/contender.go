package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/responsibility-operator/responsibility-operator/api/v1alpha1"
	"github.com/responsibility-operator/responsibility-operator/hack/bench/benchkit"
	"github.com/responsibility-operator/responsibility-operator/internal/devcluster"
)

// env is one contender's control plane, clients and workloads.
type env struct {
	o         options
	dir       string
	cluster   *devcluster.Cluster
	c         client.Client
	dyn       dynamic.Interface
	meta      metadata.Interface
	disc      discovery.DiscoveryInterface
	raw       rest.Interface
	workloads []*benchkit.Workload
	models    []*v1alpha1.ResponsibilityModel
	oracle    *benchkit.Oracle
	tracker   *benchkit.Tracker
	gvrs      map[schema.GroupVersionResource]schema.GroupVersionKind
}

// controller is a contender's process: the operator or Kyverno (nil for the
// plain client).
type controller interface {
	pid() int
	stop() error
}

// runContender measures one contender on a fresh control plane.
func runContender(ctx context.Context, o options, name string) (Contender, error) {
	r := Contender{Name: name, Description: describe(name)}
	e := &env{o: o, dir: filepath.Join(o.dir, name), tracker: benchkit.NewTracker()}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return r, fmt.Errorf("create %s: %w", e.dir, err)
	}
	benchkit.Step("%s: starting a fresh local control plane", name)
	cluster, err := devcluster.StartCluster(devcluster.ClusterOptions{
		Root: o.root, Assets: o.assets, Dir: e.dir,
		CRDDirs: []string{filepath.Join(o.root, "hack", "bench-peers", "crds")},
	})
	if err != nil {
		return r, fmt.Errorf("start control plane: %w", err)
	}
	defer func() { _ = cluster.Stop() }()
	e.cluster = cluster
	if err := e.clients(); err != nil {
		return r, err
	}
	if err := e.setUp(ctx); err != nil {
		return r, err
	}
	for _, w := range e.workloads {
		e.tracker.Expect(w.Key(), e.oracle.Want(w.Obj), time.Time{})
	}
	if strings.HasPrefix(name, "kyverno") {
		if err := e.kyvernoConfig(ctx); err != nil {
			return r, err
		}
	}
	countsBefore, err := e.objectCounts(ctx)
	if err != nil {
		return r, err
	}
	before, err := e.counters(ctx)
	if err != nil {
		return r, err
	}
	clientBefore := processCPUSeconds()

	var ctrl controller
	defer func() {
		if ctrl != nil {
			_ = ctrl.stop()
		}
	}()
	// inputs are the models or policies the contender is given, by the
	// key of objectCounts: they are not left behind.
	inputs := map[string]int{}
	start, err := e.start(ctx, &r, &ctrl, inputs)
	if err != nil {
		return r, err
	}
	last, err := e.tracker.Wait(ctx, o.timeout)
	if err != nil {
		return r, err
	}
	r.Converged = true
	r.Seconds = last.Sub(start).Seconds()
	benchkit.Step("%s: converged in %.2fs; settling for %s", name, r.Seconds, o.settle)
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(o.settle):
	}
	if n := e.tracker.Pending(); n > 0 {
		return r, fmt.Errorf("%d workloads lost their annotations while settling", n)
	}
	after, err := e.counters(ctx)
	if err != nil {
		return r, err
	}
	countsAfter, err := e.objectCounts(ctx)
	if err != nil {
		return r, err
	}
	d := after.sub(before)
	n := float64(len(e.workloads))
	r.WritesPerObject = d.writes / n
	r.TargetWritesPerObject = d.targetWrites / n
	r.ReadsPerObject = d.reads / n
	r.WritesByResource = perObject(d.writesBy, n)
	r.ReadsByResource = perObject(d.readsBy, n)
	r.ServerCPUSeconds = d.serverCPU
	r.EtcdCPUSeconds = d.etcdCPU
	r.LeftBehind = map[string]int{}
	for res, c := range countsAfter {
		if diff := c - countsBefore[res] - inputs[res]; diff != 0 {
			r.LeftBehind[res] = diff
		}
	}
	if ctrl != nil {
		if r.ControllerCPUSeconds, err = procCPUSeconds(ctrl.pid()); err != nil {
			return r, err
		}
		rss, err := procPeakRSS(ctrl.pid())
		if err != nil {
			return r, err
		}
		r.PeakRSSMiB = float64(rss) / (1 << 20)
	} else {
		r.ControllerCPUSeconds = processCPUSeconds() - clientBefore
	}
	benchkit.Step("%s: %.3f writes per workload (%.3f to the workloads), %.2f reads; CPU: controller %.1fs, API server %.1fs, etcd %.1fs; peak RSS %.0f MiB; left behind %v",
		name, r.WritesPerObject, r.TargetWritesPerObject, r.ReadsPerObject, r.ControllerCPUSeconds, r.ServerCPUSeconds, r.EtcdCPUSeconds, r.PeakRSSMiB, r.LeftBehind)
	return r, nil
}

// start starts the contender: the plain client's pass, or its controller
// given its models or policies. It returns when the models or policies were
// created (the plain client's pass started), and records the controller and
// the inputs given.
func (e *env) start(ctx context.Context, r *Contender, ctrl *controller, inputs map[string]int) (time.Time, error) {
	o := e.o
	var start time.Time
	switch r.Name {
	case "plain":
		benchkit.Step("plain: applying the annotations to %d workloads, %d at a time", len(e.workloads), o.concurrency)
		start = time.Now()
		seconds, err := e.plainPass(ctx)
		if err != nil {
			return time.Time{}, err
		}
		r.ClientSeconds = seconds
	case "operator":
		benchkit.Step("operator: starting %s", o.manager)
		op, err := devcluster.StartOperator(devcluster.OperatorOptions{
			Binary: o.manager, Kubeconfig: e.cluster.Kubeconfig, LogPath: filepath.Join(e.dir, "manager.log"),
			// The workloads were created a moment ago: with the event grace
			// period the neglected ones would be written twice (their held
			// events released), as the policies' targets are not. The same
			// setting as make bench.
			Args: []string{"--event-grace-period=0s"},
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("start the operator: %w", err)
		}
		*ctrl = operatorProcess{op}
		if err := op.WaitReady(ctx, 30*time.Second); err != nil {
			return time.Time{}, err
		}
		// As Kyverno's, once it leads and its controllers run.
		if err := op.WaitWorking(ctx, "workload", 30*time.Second); err != nil {
			return time.Time{}, err
		}
		inputs["responsibilitymodels.responsibility.io"] = len(e.models)
		benchkit.Step("operator: applying %d models with 5 duties each", len(e.models))
		start = time.Now()
		for _, m := range e.models {
			if err := e.c.Create(ctx, m.DeepCopy()); err != nil {
				return time.Time{}, fmt.Errorf("create model %s: %w", m.Name, err)
			}
		}
	default: // kyverno-*
		args := append([]string(nil), o.kyvernoArgs...)
		if strings.HasSuffix(r.Name, "-tuned") {
			args = append(args, o.tuned...)
		}
		r.Args = args
		benchkit.Step("%s: starting Kyverno's background controller %s %s", r.Name, kyvernoVersion, strings.Join(args, " "))
		k, err := startKyverno(ctx, o.kyverno, e.cluster.Kubeconfig, filepath.Join(e.dir, "kyverno.log"), args)
		if err != nil {
			return time.Time{}, err
		}
		*ctrl = k
		kind := "mpol"
		if strings.HasPrefix(r.Name, "kyverno-cpol") {
			kind = "cpol"
		}
		policies, err := readPolicies(o.root, kind)
		if err != nil {
			return time.Time{}, err
		}
		if kind == "cpol" {
			inputs["clusterpolicies.kyverno.io"] = len(policies)
		} else {
			inputs["mutatingpolicies.policies.kyverno.io"] = len(policies)
		}
		benchkit.Step("%s: applying %d policies", r.Name, len(policies))
		start = time.Now()
		for _, p := range policies {
			if err := e.c.Create(ctx, p); err != nil {
				return time.Time{}, fmt.Errorf("create %s %s: %w", p.GetKind(), p.GetName(), err)
			}
		}
	}
	return start, nil
}

func describe(name string) string {
	switch name {
	case "plain":
		return "a plain client: server-side apply of the same annotations, 16 at a time"
	case "operator":
		return "this operator (bin/manager), three models"
	case "kyverno-cpol":
		return "Kyverno ClusterPolicy, mutateExistingOnPolicyUpdate, default flags"
	case "kyverno-cpol-tuned":
		return "Kyverno ClusterPolicy, mutateExistingOnPolicyUpdate, tuned flags"
	case "kyverno-mpol":
		return "Kyverno MutatingPolicy (CEL), mutateExisting, default flags"
	case "kyverno-mpol-tuned":
		return "Kyverno MutatingPolicy (CEL), mutateExisting, tuned flags"
	}
	return name
}

func (e *env) clients() error {
	cfg := rest.CopyConfig(e.cluster.Config)
	cfg.QPS, cfg.Burst = -1, 0 // the plain client measures the server, not a client-side limit
	scheme := k8sruntime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("scheme: %w", err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("scheme: %w", err)
	}
	var err error
	if e.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if e.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	quiet := rest.CopyConfig(cfg)
	quiet.WarningHandler = rest.NoWarnings{} // counting objects lists deprecated kinds
	if e.meta, err = metadata.NewForConfig(quiet); err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(quiet)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	e.disc = cs.Discovery()
	e.raw = cs.CoreV1().RESTClient()
	return nil
}

// setUp creates the namespaces (and Kyverno's), the workloads and their
// related objects, and starts watching the workloads.
func (e *env) setUp(ctx context.Context) error {
	var err error
	if e.workloads, err = benchkit.Generate(e.o.root, e.o.n, e.o.namespaces); err != nil {
		return fmt.Errorf("generate workloads: %w", err)
	}
	if e.models, err = benchkit.BenchModels(e.o.root); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	namespaces := map[string]map[string]any{}
	for i := range e.o.namespaces + 1 {
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		if i == e.o.namespaces {
			ns.SetName(kyvernoNamespace) // every contender's server has it
		} else {
			ns.SetName(benchkit.NamespaceName(i))
		}
		if err := e.c.Create(ctx, ns); err != nil {
			return fmt.Errorf("create namespace: %w", err)
		}
		namespaces[ns.GetName()] = ns.Object
	}
	var objs []*unstructured.Unstructured
	for _, w := range e.workloads {
		if w.Related != nil {
			objs = append(objs, w.Related)
		}
		objs = append(objs, w.Obj)
	}
	benchkit.Step("creating %d workloads and %d related objects in %d namespaces", len(e.workloads), len(objs)-len(e.workloads), e.o.namespaces)
	start := time.Now()
	if err := benchkit.Parallel(ctx, e.o.concurrency, len(objs), func(i int) error {
		if err := devcluster.Create(ctx, e.c, objs[i]); err != nil {
			return fmt.Errorf("create %s %s/%s: %w", objs[i].GetKind(), objs[i].GetNamespace(), objs[i].GetName(), err)
		}
		return nil
	}); err != nil {
		return err
	}
	benchkit.Step("created in %.1fs", time.Since(start).Seconds())
	if e.oracle, err = benchkit.NewOracle(e.models, namespaces, e.workloads); err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	e.gvrs = map[schema.GroupVersionResource]schema.GroupVersionKind{}
	for i := range benchkit.Kinds {
		gvk := e.workloads[i].Obj.GroupVersionKind()
		m, err := e.c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("map %s: %w", gvk, err)
		}
		e.gvrs[m.Resource] = gvk
	}
	return e.tracker.Start(ctx, e.dyn, e.gvrs)
}

// plainPass server-side applies to every workload the annotations and label
// the oracle wants, under the operator's own keys (so that the same watch
// sees them), with a UID precondition like the operator's; it returns how
// long the client took.
func (e *env) plainPass(ctx context.Context) (float64, error) {
	patches := make([]*unstructured.Unstructured, len(e.workloads))
	for i, w := range e.workloads {
		a, l := e.oracle.Desired(w.Obj)
		annotations, labels := map[string]any{}, map[string]any{}
		for k, v := range a {
			annotations[k] = v
		}
		for k, v := range l {
			labels[k] = v
		}
		patches[i] = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": w.Obj.GetAPIVersion(), "kind": w.Obj.GetKind(),
			"metadata": map[string]any{
				"name": w.Obj.GetName(), "namespace": w.Obj.GetNamespace(), "uid": string(w.Obj.GetUID()),
				"annotations": annotations, "labels": labels,
			},
		}}
	}
	start := time.Now()
	err := benchkit.Parallel(ctx, e.o.concurrency, len(patches), func(i int) error {
		return e.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(patches[i]), client.FieldOwner("bench-plain"), client.ForceOwnership)
	})
	if err != nil {
		return 0, fmt.Errorf("plain pass: %w", err)
	}
	return time.Since(start).Seconds(), nil
}

// kyvernoConfig creates Kyverno's ConfigMap as its Helm chart (v1.19.1,
// charts/kyverno/values.yaml `config`) does, with the chart's resource filters
// that name kinds rather than Kyverno's own objects. Without it Kyverno's
// updateRequestThreshold is 0 and no UpdateRequest is ever created
// (pkg/config/config.go NewDefaultConfiguration, pkg/utils/generator).
func (e *env) kyvernoConfig(ctx context.Context) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kyverno", Namespace: kyvernoNamespace},
		Data: map[string]string{
			"enableDefaultRegistryMutation": "true",
			"defaultRegistry":               "docker.io",
			"generateSuccessEvents":         "false",
			"excludeGroups":                 "system:nodes",
			"updateRequestThreshold":        "1000",
			"resourceFilters": "[*/*,kyverno,*] [Event,*,*] [*/*,kube-system,*] [*/*,kube-public,*] [*/*,kube-node-lease,*] " +
				"[Node,*,*] [Node/?*,*,*] [APIService,*,*] [APIService/?*,*,*] [TokenReview,*,*] [SubjectAccessReview,*,*] " +
				"[SelfSubjectAccessReview,*,*] [Binding,*,*] [Pod/binding,*,*] [ReplicaSet,*,*] [ReplicaSet/?*,*,*] " +
				"[EphemeralReport,*,*] [ClusterEphemeralReport,*,*]",
		},
	}
	if err := e.c.Create(ctx, cm); err != nil {
		return fmt.Errorf("create Kyverno's ConfigMap: %w", err)
	}
	return nil
}

// readPolicies reads the committed policies of one kind (cpol or mpol).
func readPolicies(root, kind string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(policyDir(root), kind+"-*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no %s policies in %s", kind, policyDir(root))
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read policy: %w", err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// operatorProcess is the operator as a controller.
type operatorProcess struct{ op *devcluster.Operator }

func (p operatorProcess) pid() int    { return p.op.Cmd.Process.Pid }
func (p operatorProcess) stop() error { return p.op.Stop() }
