// Command validate checks the leaderboard's Kubernetes manifests offline.
//
// Each argument is a kustomization directory (an overlay). It is rendered with the kustomize
// library, every object is decoded strictly into its typed Kubernetes struct (an unknown field
// or a wrong type fails), and the references between objects are checked: selectors match pod
// labels, probes and Services name real container ports, the autoscaler's target exists,
// ConfigMap/Secret references resolve, every LEADERBOARD_* name is a real setting, worker
// replicas stay within the topic's partitions, and every container has probes, resources and
// a graceful shutdown. Exit status 1 with one line per problem; 0 prints a summary.
//
//	validate -settings names.txt [-metrics metrics.txt] DIR...
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// workerRoles are the components that consume a topic of LEADERBOARD_PARTITIONS partitions.
var workerRoles = map[string]bool{"projector": true, "sinks": true, "topk": true}

// extraEnv are variables the processes read besides their settings.
var extraEnv = map[string]bool{
	"OTEL_EXPORTER_OTLP_ENDPOINT": true,
	"OTEL_RESOURCE_ATTRIBUTES":    true,
	"PYTHONUNBUFFERED":            true,
}

// defaultPartitions is Settings.partitions' default, used when no ConfigMap sets it.
const defaultPartitions = 6

type objects struct {
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	accounts    map[string]*corev1.ServiceAccount
	services    []*corev1.Service
	deployments map[string]*appsv1.Deployment
	jobs        []*batchv1.Job
	autoscalers []*autoscalingv2.HorizontalPodAutoscaler
	budgets     []*policyv1.PodDisruptionBudget
	count       int
}

type checker struct {
	where    string
	problems []string
	settings map[string]bool
	metrics  map[string]bool
}

func (c *checker) fail(format string, args ...any) {
	c.problems = append(c.problems, c.where+": "+fmt.Sprintf(format, args...))
}

func main() {
	settingsFile := flag.String("settings", "", "file of the valid LEADERBOARD_* names, one a line (required)")
	metricsFile := flag.String("metrics", "", "file of the gateway's Prometheus metric names (Pods metrics of an HPA must be one)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: validate -settings FILE [-metrics FILE] KUSTOMIZATION_DIR...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *settingsFile == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	settings, err := readNames(*settingsFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "validate: %v\n", err)
		os.Exit(2)
	}
	var metrics map[string]bool
	if *metricsFile != "" {
		if metrics, err = readNames(*metricsFile); err != nil {
			fmt.Fprintf(os.Stderr, "validate: %v\n", err)
			os.Exit(2)
		}
	}
	var problems []string
	for _, dir := range flag.Args() {
		c := &checker{where: dir, settings: settings, metrics: metrics}
		objs := c.render(dir)
		if objs != nil {
			c.check(objs)
			fmt.Printf("%s: %d objects\n", dir, objs.count)
		}
		problems = append(problems, c.problems...)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "validate: %d problem(s)\n", len(problems))
		os.Exit(1)
	}
}

func readNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" {
			names[line] = true
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no names", path)
	}
	return names, s.Err()
}

// render builds the kustomization and decodes every object strictly.
func (c *checker) render(dir string) *objects {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		c.fail("kustomize: %v", err)
		return nil
	}
	objs := &objects{
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		accounts:    map[string]*corev1.ServiceAccount{},
		deployments: map[string]*appsv1.Deployment{},
	}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			c.fail("%s: %v", r.CurId(), err)
			continue
		}
		objs.count++
		c.decode(doc, objs)
	}
	return objs
}

func (c *checker) decode(doc []byte, objs *objects) {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		c.fail("not a Kubernetes object: %v", err)
		return
	}
	gvk := meta.APIVersion + "/" + meta.Kind
	// a failure is reported; the object still joins the others when it decodes leniently,
	// so that one typo does not also report every reference to the object as dangling
	strict := func(into any) bool {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			c.fail("%s %s: %v", gvk, nameOf(doc), err)
			return yaml.Unmarshal(doc, into) == nil
		}
		return true
	}
	switch gvk {
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		if strict(o) {
			objs.configMaps[o.Name] = o
		}
	case "v1/Secret":
		o := &corev1.Secret{}
		if strict(o) {
			objs.secrets[o.Name] = o
		}
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		if strict(o) {
			objs.accounts[o.Name] = o
		}
	case "v1/Service":
		o := &corev1.Service{}
		if strict(o) {
			objs.services = append(objs.services, o)
		}
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		if strict(o) {
			objs.deployments[o.Name] = o
		}
	case "batch/v1/Job":
		o := &batchv1.Job{}
		if strict(o) {
			objs.jobs = append(objs.jobs, o)
		}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		if strict(o) {
			objs.autoscalers = append(objs.autoscalers, o)
		}
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		if strict(o) {
			objs.budgets = append(objs.budgets, o)
		}
	default:
		c.fail("%s %s: kind not expected here (the validator knows ConfigMap, Secret, ServiceAccount, Service, Deployment, Job, HorizontalPodAutoscaler, PodDisruptionBudget)", gvk, nameOf(doc))
	}
}

func nameOf(doc []byte) string {
	var o metav1.PartialObjectMetadata
	_ = yaml.Unmarshal(doc, &o)
	return strconv.Quote(o.Name)
}

func (c *checker) check(objs *objects) {
	served := map[string]bool{} // deployments a Service selects
	for _, s := range objs.services {
		c.checkService(s, objs, served)
	}
	names := sortedKeys(objs.deployments)
	for _, name := range names {
		d := objs.deployments[name]
		c.checkDeployment(d, objs, served[name])
	}
	for _, j := range objs.jobs {
		c.checkPodSpec("Job "+j.Name, &j.Spec.Template.Spec, objs, false)
		if p := j.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
			c.fail("Job %s: restartPolicy must be Never or OnFailure, not %q", j.Name, p)
		}
		if j.Spec.BackoffLimit == nil {
			c.fail("Job %s: no backoffLimit", j.Name)
		}
	}
	for _, h := range objs.autoscalers {
		c.checkAutoscaler(h, objs)
	}
	for _, b := range objs.budgets {
		c.checkBudget(b, objs)
	}
	for _, cm := range objs.configMaps {
		for key := range cm.Data {
			c.checkEnvName("ConfigMap "+cm.Name, key)
		}
	}
	for _, s := range objs.secrets {
		for key := range s.StringData {
			c.checkEnvName("Secret "+s.Name, key)
		}
		for key := range s.Data {
			c.checkEnvName("Secret "+s.Name, key)
		}
	}
}

func (c *checker) checkEnvName(where, name string) {
	if strings.HasPrefix(name, "LEADERBOARD_") {
		if !c.settings[name] {
			c.fail("%s: %s is not a setting of streams/settings.py", where, name)
		}
		return
	}
	if !extraEnv[name] {
		c.fail("%s: variable %s is read by nothing (not LEADERBOARD_* nor a known one)", where, name)
	}
}

func (c *checker) checkDeployment(d *appsv1.Deployment, objs *objects, served bool) {
	what := "Deployment " + d.Name
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || d.Spec.Selector == nil || sel.Empty() {
		c.fail("%s: missing or invalid selector: %v", what, err)
	} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		c.fail("%s: selector %s does not match the pod template's labels %v", what, sel, d.Spec.Template.Labels)
	}
	spec := &d.Spec.Template.Spec
	c.checkPodSpec(what, spec, objs, true)
	if spec.TerminationGracePeriodSeconds == nil {
		c.fail("%s: terminationGracePeriodSeconds not set (graceful shutdown)", what)
	}
	role := d.Spec.Template.Labels["app.kubernetes.io/component"]
	if workerRoles[role] {
		partitions := c.partitions(spec, objs)
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if int(replicas) > partitions {
			c.fail("%s: %d replicas but the topics have %d partitions (LEADERBOARD_PARTITIONS): %d would idle", what, replicas, partitions, int(replicas)-partitions)
		}
	}
	for _, ctr := range spec.Containers {
		if served {
			if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil {
				c.fail("%s: container %s behind a Service has no preStop (it would get requests after SIGTERM)", what, ctr.Name)
			} else if ctr.Lifecycle.PreStop.Sleep != nil && spec.TerminationGracePeriodSeconds != nil &&
				ctr.Lifecycle.PreStop.Sleep.Seconds >= *spec.TerminationGracePeriodSeconds {
				c.fail("%s: preStop sleeps %ds, not less than terminationGracePeriodSeconds %d", what, ctr.Lifecycle.PreStop.Sleep.Seconds, *spec.TerminationGracePeriodSeconds)
			}
		}
	}
}

// partitions is LEADERBOARD_PARTITIONS as the pod sees it (env, then envFrom ConfigMaps).
func (c *checker) partitions(spec *corev1.PodSpec, objs *objects) int {
	for _, ctr := range spec.Containers {
		for _, e := range ctr.Env {
			if e.Name == "LEADERBOARD_PARTITIONS" && e.Value != "" {
				return c.atoi("env LEADERBOARD_PARTITIONS", e.Value)
			}
		}
		for _, from := range ctr.EnvFrom {
			if from.ConfigMapRef == nil {
				continue
			}
			if cm := objs.configMaps[from.ConfigMapRef.Name]; cm != nil {
				if v, ok := cm.Data["LEADERBOARD_PARTITIONS"]; ok {
					return c.atoi("ConfigMap "+cm.Name+" LEADERBOARD_PARTITIONS", v)
				}
			}
		}
	}
	return defaultPartitions
}

func (c *checker) atoi(what, v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		c.fail("%s: %q is not a positive integer", what, v)
		return defaultPartitions
	}
	return n
}

func (c *checker) checkPodSpec(what string, spec *corev1.PodSpec, objs *objects, longRunning bool) {
	if spec.ServiceAccountName != "" && objs.accounts[spec.ServiceAccountName] == nil {
		c.fail("%s: ServiceAccount %q does not exist", what, spec.ServiceAccountName)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil && objs.configMaps[v.ConfigMap.Name] == nil && !optional(v.ConfigMap.Optional) {
			c.fail("%s: volume %s: ConfigMap %q does not exist", what, v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && objs.secrets[v.Secret.SecretName] == nil && !optional(v.Secret.Optional) {
			c.fail("%s: volume %s: Secret %q does not exist", what, v.Name, v.Secret.SecretName)
		}
	}
	if len(spec.Containers) == 0 {
		c.fail("%s: no containers", what)
	}
	for i := range spec.Containers {
		ctr := &spec.Containers[i]
		cw := fmt.Sprintf("%s container %s", what, ctr.Name)
		for _, m := range ctr.VolumeMounts {
			if !volumes[m.Name] {
				c.fail("%s: mounts volume %q that the pod does not define", cw, m.Name)
			}
		}
		c.checkResources(cw, ctr.Resources)
		c.checkEnv(cw, ctr, objs)
		if !longRunning {
			continue
		}
		if ctr.LivenessProbe == nil || ctr.ReadinessProbe == nil {
			c.fail("%s: needs a livenessProbe and a readinessProbe", cw)
		}
		for name, p := range map[string]*corev1.Probe{"startupProbe": ctr.StartupProbe, "livenessProbe": ctr.LivenessProbe, "readinessProbe": ctr.ReadinessProbe} {
			if p != nil {
				c.checkProbe(cw+" "+name, p, ctr)
			}
		}
	}
}

func optional(b *bool) bool { return b != nil && *b }

func (c *checker) checkResources(what string, r corev1.ResourceRequirements) {
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[res]
		lim, hasLim := r.Limits[res]
		if !hasReq || !hasLim {
			c.fail("%s: needs a %s request and limit", what, res)
			continue
		}
		if req.Cmp(lim) > 0 {
			c.fail("%s: %s request %s above its limit %s", what, res, req.String(), lim.String())
		}
	}
}

func (c *checker) checkEnv(what string, ctr *corev1.Container, objs *objects) {
	for _, e := range ctr.Env {
		c.checkEnvName(what, e.Name)
		if e.ValueFrom == nil {
			continue
		}
		if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil && !optional(ref.Optional) {
			cm := objs.configMaps[ref.Name]
			if cm == nil {
				c.fail("%s: env %s: ConfigMap %q does not exist", what, e.Name, ref.Name)
			} else if _, ok := cm.Data[ref.Key]; !ok {
				c.fail("%s: env %s: ConfigMap %q has no key %q", what, e.Name, ref.Name, ref.Key)
			}
		}
		if ref := e.ValueFrom.SecretKeyRef; ref != nil && !optional(ref.Optional) {
			s := objs.secrets[ref.Name]
			if s == nil {
				c.fail("%s: env %s: Secret %q does not exist", what, e.Name, ref.Name)
			} else if _, inData := s.Data[ref.Key]; !inData {
				if _, inString := s.StringData[ref.Key]; !inString {
					c.fail("%s: env %s: Secret %q has no key %q", what, e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
	for _, from := range ctr.EnvFrom {
		if ref := from.ConfigMapRef; ref != nil && objs.configMaps[ref.Name] == nil && !optional(ref.Optional) {
			c.fail("%s: envFrom ConfigMap %q does not exist", what, ref.Name)
		}
		if ref := from.SecretRef; ref != nil && objs.secrets[ref.Name] == nil && !optional(ref.Optional) {
			c.fail("%s: envFrom Secret %q does not exist", what, ref.Name)
		}
		if from.Prefix != "" {
			c.fail("%s: envFrom with prefix %q renames every setting", what, from.Prefix)
		}
	}
}

// containerPort finds the port a probe or Service names, by name or number.
func containerPort(ctr *corev1.Container, port intstr.IntOrString) bool {
	for _, p := range ctr.Ports {
		if port.Type == intstr.String && p.Name == port.StrVal {
			return true
		}
		if port.Type == intstr.Int && p.ContainerPort == port.IntVal {
			return true
		}
	}
	return false
}

func (c *checker) checkProbe(what string, p *corev1.Probe, ctr *corev1.Container) {
	switch {
	case p.HTTPGet != nil:
		if !containerPort(ctr, p.HTTPGet.Port) {
			c.fail("%s: port %s is not a port of the container", what, p.HTTPGet.Port.String())
		}
		if !strings.HasPrefix(p.HTTPGet.Path, "/") {
			c.fail("%s: path %q must start with /", what, p.HTTPGet.Path)
		}
	case p.TCPSocket != nil:
		if !containerPort(ctr, p.TCPSocket.Port) {
			c.fail("%s: port %s is not a port of the container", what, p.TCPSocket.Port.String())
		}
	case p.Exec != nil, p.GRPC != nil:
	default:
		c.fail("%s: no handler", what)
	}
}

func (c *checker) checkService(s *corev1.Service, objs *objects, served map[string]bool) {
	what := "Service " + s.Name
	if len(s.Spec.Selector) == 0 {
		c.fail("%s: no selector", what)
		return
	}
	sel := labels.SelectorFromSet(s.Spec.Selector)
	var matched []*appsv1.Deployment
	for _, name := range sortedKeys(objs.deployments) {
		d := objs.deployments[name]
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			matched = append(matched, d)
			served[name] = true
		}
	}
	if len(matched) == 0 {
		c.fail("%s: selector %s matches no Deployment's pods", what, sel)
		return
	}
	for _, port := range s.Spec.Ports {
		target := port.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(port.Port)
		}
		for _, d := range matched {
			found := false
			for i := range d.Spec.Template.Spec.Containers {
				found = found || containerPort(&d.Spec.Template.Spec.Containers[i], target)
			}
			if !found {
				c.fail("%s: port %s targets %s, not a container port of Deployment %s", what, port.Name, target.String(), d.Name)
			}
		}
	}
}

func (c *checker) checkAutoscaler(h *autoscalingv2.HorizontalPodAutoscaler, objs *objects) {
	what := "HorizontalPodAutoscaler " + h.Name
	ref := h.Spec.ScaleTargetRef
	d := objs.deployments[ref.Name]
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil {
		c.fail("%s: target %s %s %q does not exist", what, ref.APIVersion, ref.Kind, ref.Name)
		return
	}
	if d.Spec.Replicas != nil {
		c.fail("%s: Deployment %s sets replicas too: each apply would fight the autoscaler", what, d.Name)
	}
	if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas > h.Spec.MaxReplicas {
		c.fail("%s: minReplicas %d above maxReplicas %d", what, *h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	kinds := map[autoscalingv2.MetricSourceType]bool{}
	for _, m := range h.Spec.Metrics {
		kinds[m.Type] = true
		switch m.Type {
		case autoscalingv2.ResourceMetricSourceType:
			if m.Resource == nil {
				c.fail("%s: Resource metric without resource", what)
				continue
			}
			for _, ctr := range d.Spec.Template.Spec.Containers {
				if _, ok := ctr.Resources.Requests[m.Resource.Name]; !ok && m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
					c.fail("%s: %s utilization needs a %s request on container %s", what, m.Resource.Name, m.Resource.Name, ctr.Name)
				}
			}
		case autoscalingv2.PodsMetricSourceType:
			if m.Pods == nil {
				c.fail("%s: Pods metric without pods", what)
				continue
			}
			if c.metrics != nil && !c.metrics[m.Pods.Metric.Name] {
				c.fail("%s: Pods metric %q is not a metric the gateway exposes", what, m.Pods.Metric.Name)
			}
			if m.Pods.Target.Type != autoscalingv2.AverageValueMetricType || m.Pods.Target.AverageValue == nil {
				c.fail("%s: Pods metric %q needs an AverageValue target", what, m.Pods.Metric.Name)
			}
		}
	}
	if !kinds[autoscalingv2.ResourceMetricSourceType] || !kinds[autoscalingv2.PodsMetricSourceType] {
		c.fail("%s: scales on CPU (Resource) and on WebSocket subscribers (Pods): both metrics needed", what)
	}
}

func (c *checker) checkBudget(b *policyv1.PodDisruptionBudget, objs *objects) {
	what := "PodDisruptionBudget " + b.Name
	if (b.Spec.MinAvailable == nil) == (b.Spec.MaxUnavailable == nil) {
		c.fail("%s: set exactly one of minAvailable and maxUnavailable", what)
	}
	sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	if err != nil || b.Spec.Selector == nil || sel.Empty() {
		c.fail("%s: missing or invalid selector: %v", what, err)
		return
	}
	for _, d := range objs.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			return
		}
	}
	c.fail("%s: selector %s matches no Deployment's pods", what, sel)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
