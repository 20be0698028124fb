package deploy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/responder"
)

// manifests holds every Kubernetes object of deploy/kubernetes, decoded
// strictly into the API's Go types: an unknown or misspelled field, or a value
// of the wrong type, fails the decode, as the API server's strict field
// validation would.
type manifests struct {
	namespaces  []corev1.Namespace
	daemonSets  []appsv1.DaemonSet
	deployments []appsv1.Deployment
	services    []corev1.Service
	pvcs        []corev1.PersistentVolumeClaim
	configMaps  []corev1.ConfigMap
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	data, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &kust); err != nil {
		t.Fatalf("decode kustomization.yaml: %v", err)
	}
	if len(kust.Resources) == 0 {
		t.Fatal("kustomization.yaml lists no resources")
	}
	var m manifests
	for _, name := range kust.Resources {
		data, err := os.ReadFile(filepath.Join("kubernetes", name))
		if err != nil {
			t.Fatalf("kustomization.yaml resource: %v", err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			if err := m.add([]byte(doc)); err != nil {
				t.Errorf("%s, document %d: %v", name, i+1, err)
			}
		}
	}
	return m
}

func (m *manifests) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var obj any
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		m.namespaces = append(m.namespaces, corev1.Namespace{})
		obj = &m.namespaces[len(m.namespaces)-1]
	case "apps/v1/DaemonSet":
		m.daemonSets = append(m.daemonSets, appsv1.DaemonSet{})
		obj = &m.daemonSets[len(m.daemonSets)-1]
	case "apps/v1/Deployment":
		m.deployments = append(m.deployments, appsv1.Deployment{})
		obj = &m.deployments[len(m.deployments)-1]
	case "v1/Service":
		m.services = append(m.services, corev1.Service{})
		obj = &m.services[len(m.services)-1]
	case "v1/PersistentVolumeClaim":
		m.pvcs = append(m.pvcs, corev1.PersistentVolumeClaim{})
		obj = &m.pvcs[len(m.pvcs)-1]
	case "v1/ConfigMap":
		m.configMaps = append(m.configMaps, corev1.ConfigMap{})
		obj = &m.configMaps[len(m.configMaps)-1]
	default:
		return fmt.Errorf("unexpected kind %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("strict decode %s: %w", tm.Kind, err)
	}
	return nil
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	if len(m.namespaces) != 1 || len(m.daemonSets) != 1 || len(m.deployments) != 1 || len(m.services) != 2 {
		t.Fatalf("want 1 Namespace, 1 DaemonSet, 1 Deployment, 2 Services; got %d, %d, %d, %d",
			len(m.namespaces), len(m.daemonSets), len(m.deployments), len(m.services))
	}
	ns := m.namespaces[0].Name
	var objects []metav1.ObjectMeta
	for _, d := range m.daemonSets {
		objects = append(objects, d.ObjectMeta)
		checkPodSpec(t, "DaemonSet "+d.Name, d.Spec.Selector, d.Spec.Template)
	}
	for _, d := range m.deployments {
		objects = append(objects, d.ObjectMeta)
		checkPodSpec(t, "Deployment "+d.Name, d.Spec.Selector, d.Spec.Template)
		for _, v := range d.Spec.Template.Spec.Volumes {
			if pvc := v.PersistentVolumeClaim; pvc != nil && !slices.ContainsFunc(m.pvcs, func(p corev1.PersistentVolumeClaim) bool { return p.Name == pvc.ClaimName }) {
				t.Errorf("Deployment %s: claim %s is not among the manifests", d.Name, pvc.ClaimName)
			}
			if cm := v.ConfigMap; cm != nil && !slices.ContainsFunc(m.configMaps, func(c corev1.ConfigMap) bool { return c.Name == cm.Name }) {
				t.Errorf("Deployment %s: ConfigMap %s is not among the manifests", d.Name, cm.Name)
			}
		}
	}
	for _, s := range m.services {
		objects = append(objects, s.ObjectMeta)
		checkService(t, s, m)
	}
	for _, p := range m.pvcs {
		objects = append(objects, p.ObjectMeta)
	}
	for _, c := range m.configMaps {
		objects = append(objects, c.ObjectMeta)
	}
	for _, o := range objects {
		if o.Namespace != ns {
			t.Errorf("%s: namespace %q, want %q", o.Name, o.Namespace, ns)
		}
		if errs := validation.IsDNS1123Label(o.Name); len(errs) > 0 {
			t.Errorf("%s: %v", o.Name, errs)
		}
	}
}

// TestAgentDaemonSet checks what the agent cannot run without.
func TestAgentDaemonSet(t *testing.T) {
	m := loadManifests(t)
	if len(m.daemonSets) != 1 {
		t.Fatalf("want one DaemonSet")
	}
	spec := m.daemonSets[0].Spec.Template.Spec
	if !spec.HostNetwork {
		t.Errorf("hostNetwork is off: the guard must sit on the node's interfaces")
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet with hostNetwork", spec.DNSPolicy)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container")
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "agent" {
		t.Errorf("args %v, want the agent subcommand first", c.Args)
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	if sc.Privileged == nil || !*sc.Privileged {
		var caps []string
		if sc.Capabilities != nil {
			for _, c := range sc.Capabilities.Add {
				caps = append(caps, string(c))
			}
		}
		for _, want := range []string{"BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"} {
			if !slices.Contains(caps, want) {
				t.Errorf("capability %s missing (have %v) and the container is not privileged", want, caps)
			}
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, path := range []string{"/sys/fs/bpf", "/sys/kernel/tracing"} {
		vm, ok := mounts[path]
		if !ok {
			t.Errorf("%s is not mounted", path)
			continue
		}
		if hp := volumes[vm.Name].HostPath; hp == nil || hp.Path != path {
			t.Errorf("%s is not the host's %s", path, path)
		}
	}
	if !slices.Contains(c.Args, "--bpf.pin-path=/sys/fs/bpf/packetscope") {
		t.Errorf("args %v: pin under the mounted host bpffs so rules survive the pod", c.Args)
	}
	var port int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			port = p.ContainerPort
		}
	}
	if port != 9436 || !slices.Contains(c.Args, "--web.listen-address=:9436") {
		t.Errorf("metrics port %d, args %v: want the agent listening on :9436, port named metrics", port, c.Args)
	}
}

func checkPodSpec(t *testing.T, what string, sel *metav1.LabelSelector, tpl corev1.PodTemplateSpec) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		t.Errorf("%s: selector %v: %v", what, sel, err)
	} else if !s.Matches(labels.Set(tpl.Labels)) {
		t.Errorf("%s: selector %s does not match the pod template's labels %v", what, s, tpl.Labels)
	}
	volumes := map[string]bool{}
	for _, v := range tpl.Spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range tpl.Spec.Containers {
		if c.Image == "" {
			t.Errorf("%s/%s: no image", what, c.Name)
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		// A container that serves nothing (the discovery sidecar) has no
		// HTTP endpoint to probe; one that serves must be probed.
		for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if len(c.Ports) == 0 {
				break
			}
			if probe == nil || probe.HTTPGet == nil {
				t.Errorf("%s/%s: want HTTP readiness and liveness probes (/readyz, /healthz)", what, c.Name)
				continue
			}
			if !ports[probe.HTTPGet.Port.StrVal] {
				t.Errorf("%s/%s: probe port %q is not a named container port", what, c.Name, probe.HTTPGet.Port.String())
			}
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s/%s: mount of undeclared volume %q", what, c.Name, vm.Name)
			}
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: no memory limit", what, c.Name)
		}
	}
}

func checkService(t *testing.T, s corev1.Service, m manifests) {
	t.Helper()
	var templates []corev1.PodTemplateSpec
	for _, d := range m.daemonSets {
		templates = append(templates, d.Spec.Template)
	}
	for _, d := range m.deployments {
		templates = append(templates, d.Spec.Template)
	}
	var matched []corev1.PodTemplateSpec
	for _, tpl := range templates {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(tpl.Labels)) {
			matched = append(matched, tpl)
		}
	}
	if len(matched) != 1 {
		t.Errorf("Service %s selects %d workloads, want 1", s.Name, len(matched))
		return
	}
	for _, p := range s.Spec.Ports {
		found := false
		for _, c := range matched[0].Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == p.TargetPort.StrVal && cp.ContainerPort == p.Port {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("Service %s port %s: target %q is not a container port numbered %d", s.Name, p.Name, p.TargetPort.String(), p.Port)
		}
	}
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestDeployedFlagsExist: every flag the manifests and the systemd unit pass
// is one the binary's subcommand accepts (a renamed flag would crash-loop the
// pods or the service).
func TestDeployedFlagsExist(t *testing.T) {
	bin := testnet.PacketscopeBinary(t)
	m := loadManifests(t)
	invocations := map[string][]string{} // name -> args, subcommand first
	for _, d := range m.daemonSets {
		invocations["DaemonSet "+d.Name] = d.Spec.Template.Spec.Containers[0].Args
	}
	for _, d := range m.deployments {
		invocations["Deployment "+d.Name] = d.Spec.Template.Spec.Containers[0].Args
	}
	unit, err := os.ReadFile("systemd/packetscope.service")
	if err != nil {
		t.Fatal(err)
	}
	execStart := regexp.MustCompile(`(?s)ExecStart=\S+ (.*?)\$PACKETSCOPE_ARGS`).FindSubmatch(unit)
	if execStart == nil {
		t.Fatal("no ExecStart=... $PACKETSCOPE_ARGS in the unit")
	}
	invocations["packetscope.service"] = strings.Fields(strings.ReplaceAll(string(execStart[1]), "\\\n", " "))
	flagName := regexp.MustCompile(`^--([a-z][a-z0-9.-]*)`)
	for name, args := range invocations {
		if len(args) == 0 {
			t.Errorf("%s: no arguments", name)
			continue
		}
		help, err := exec.Command(bin, args[0], "--help").CombinedOutput()
		if err != nil {
			t.Errorf("%s: packetscope %s --help: %v\n%s", name, args[0], err, help)
			continue
		}
		for _, a := range args[1:] {
			f := flagName.FindStringSubmatch(a)
			if f == nil {
				t.Errorf("%s: argument %q is not a --flag", name, a)
				continue
			}
			if !regexp.MustCompile(`--(\[no-\])?` + regexp.QuoteMeta(f[1]) + `\b`).Match(help) {
				t.Errorf("%s: packetscope %s has no flag --%s", name, args[0], f[1])
			}
		}
	}
}

// capNumbers are the capabilities the manifests may name (linux/capability.h).
var capNumbers = map[string]uint{
	"NET_ADMIN": 12, "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39,
}

// TestAgentRunsWithManifestCapabilities runs the real agent with exactly
// the capabilities the DaemonSet grants (no more in its bounding set), on the
// host network of a namespace (as hostNetwork gives it the node's), with
// bpffs mounted (as the hostPath volume provides it), and requires it to
// become ready and accept a rule: the manifest's capability list is enough.
func TestAgentRunsWithManifestCapabilities(t *testing.T) {
	testnet.RequireRoot(t)
	tool(t, "nsenter", "util-linux")
	tool(t, "setpriv", "util-linux")
	tool(t, "curl", "curl")
	if err := bpf.EnsureFilesystems(); err != nil {
		t.Fatalf("mount bpffs/tracefs: %v", err)
	}
	bin := testnet.PacketscopeBinary(t)
	m := loadManifests(t)
	if len(m.daemonSets) != 1 {
		t.Fatal("want one DaemonSet")
	}
	c := m.daemonSets[0].Spec.Template.Spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil {
		t.Fatal("the agent container names no capabilities")
	}
	if p := c.SecurityContext.Privileged; p != nil && *p {
		t.Skip("privileged agent: nothing to check") // not a CI condition: the manifest is ours
	}

	// Only what this process may hand on: a sandbox may lack some
	// capability (e.g. SYS_RESOURCE, needed only before Linux 5.11).
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var bounding uint64
	if m := regexp.MustCompile(`CapBnd:\s*([0-9a-f]+)`).FindSubmatch(status); m != nil {
		fmt.Sscanf(string(m[1]), "%x", &bounding)
	}
	keep := []string{"-all"}
	for _, cp := range c.SecurityContext.Capabilities.Add {
		n, ok := capNumbers[string(cp)]
		if !ok {
			t.Fatalf("capability %s: add it to capNumbers", cp)
		}
		if bounding&(1<<n) == 0 {
			t.Logf("this test process lacks CAP_%s; the agent runs without it", cp)
			continue
		}
		keep = append(keep, "+"+strings.ToLower(string(cp)))
	}

	ns := testnet.NewNS(t, "ps-h5c")
	peer := testnet.NewNS(t, "ps-h5q")
	testnet.Link(t, ns, "h5cap", "10.215.3.1/24", peer, "h5capp", "10.215.3.2/24")
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	pin := "/sys/fs/bpf/ps-h5c-" + hex.EncodeToString(suffix)
	t.Cleanup(func() {
		if out, err := exec.Command(bin, "cleanup", "--bpf.pin-path="+pin).CombinedOutput(); err != nil {
			t.Logf("packetscope cleanup: %v\n%s", err, out)
		}
		_ = os.RemoveAll(pin)
	})
	token := filepath.Join(t.TempDir(), "api.token")
	if err := os.WriteFile(token, []byte("h5-cap-test"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The manifest's arguments, with this test's interface, pins and token.
	args := []string{"--net=" + ns.Path(), "setpriv", "--bounding-set=" + strings.Join(keep, ","), bin}
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--bpf.pin-path="):
			a = "--bpf.pin-path=" + pin
		case strings.HasPrefix(a, "--api.token-file="):
			a = "--api.token-file=" + token
		case strings.HasPrefix(a, "--web.listen-address="):
			a = "--web.listen-address=127.0.0.1:9436"
		}
		args = append(args, a)
	}
	args = append(args, "--interfaces=h5cap")
	agent := exec.Command("nsenter", args...)
	var out testnet.SyncBuffer
	agent.Stdout, agent.Stderr = &out, &out
	if err := agent.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = agent.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = agent.Process.Kill()
			<-exited
		}
	})
	logs := func() string { return "agent (capabilities " + strings.Join(keep, ",") + "):\n" + out.String() }
	testnet.WaitForProcess(t, 30*time.Second, exited, logs, "the agent to be ready", func() bool {
		return ns.Cmd("curl", "-fs", "--max-time", "1", "-o", "/dev/null", "http://127.0.0.1:9436/readyz").Run() == nil
	})
	body, err := ns.Cmd("curl", "-fsS", "--max-time", "5", "-H", "Authorization: Bearer h5-cap-test",
		"--data", `{"action":"monitor","match":{"protocol":"icmp"},"ttl_seconds":60,"reason":"capability test"}`,
		"http://127.0.0.1:9436/api/v1/rules").CombinedOutput()
	if err != nil {
		t.Fatalf("add a rule: %v\n%s\n%s", err, body, logs())
	}
	// The last gate knows the node's own addresses with these capabilities
	// too: reading them must not need CAP_SYS_ADMIN (a setns into the
	// agent's own namespace would).
	code, err := ns.Cmd("curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer h5-cap-test",
		"--data", `{"action":"drop","match":{"src":"10.215.3.1/32","protocol":"udp"},"ttl_seconds":60,"reason":"must be refused"}`,
		"http://127.0.0.1:9436/api/v1/rules").Output()
	if err != nil || string(code) != "400" {
		t.Errorf("a drop rule covering the node's own address: HTTP %s (%v), want 400 from the last gate\n%s", code, err, logs())
	}
	peer.MustRun("ping", "-q", "-c", "3", "-i", "0.2", "10.215.3.1")
	metrics, _ := ns.Cmd("curl", "-fsS", "--max-time", "5", "http://127.0.0.1:9436/metrics").Output()
	if bytes.Contains(metrics, []byte(`packetscope_scrape_collector_success{collector=`)) &&
		regexp.MustCompile(`packetscope_scrape_collector_success\{collector="[a-z]+"\} 0`).Match(metrics) {
		t.Errorf("a collector fails with these capabilities:\n%s", grepLines(metrics, "packetscope_scrape_collector_success"))
	}
	if !regexp.MustCompile(`packetscope_guard_rule_packets_total\{rule="[^"]+"\} [1-9]`).Match(metrics) {
		t.Errorf("the rule counted no packets:\n%s", grepLines(metrics, "packetscope_guard_rule_packets_total"))
	}
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestResponderRunsUnprivileged runs the real responder as the Deployment
// does: its user, no capabilities, its arguments (with this test's files),
// and requires it to get ready and to reject a webhook call without the token.
func TestResponderRunsUnprivileged(t *testing.T) {
	testnet.RequireRoot(t)
	tool(t, "setpriv", "util-linux")
	tool(t, "curl", "curl")
	bin := testnet.PacketscopeBinary(t)
	m := loadManifests(t)
	if len(m.deployments) != 1 {
		t.Fatal("want one Deployment")
	}
	spec := m.deployments[0].Spec.Template.Spec
	c := spec.Containers[0]
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Fatalf("the responder should run as a non-root user: %+v", psc)
	}
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil || len(c.SecurityContext.Capabilities.Add) > 0 {
		t.Fatalf("the responder should drop every capability: %+v", c.SecurityContext)
	}
	uid := fmt.Sprint(*psc.RunAsUser)
	gid := uid
	if psc.RunAsGroup != nil {
		gid = fmt.Sprint(*psc.RunAsGroup)
	}

	// Files as the Secret and the volume provide them: tokens readable by
	// the pod's group (fsGroup), the audit directory writable.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // the responder's user must get through
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{}
	for _, name := range []string{"webhook.token", "api.token"} {
		files[name] = filepath.Join(dir, name)
		if err := os.WriteFile(files[name], []byte("h5-"+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	audit := filepath.Join(dir, "audit")
	if err := os.Mkdir(audit, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(audit, int(*psc.RunAsUser), int(*psc.RunAsUser)); err != nil {
		t.Fatal(err)
	}
	ns := testnet.NewNS(t, "ps-h5r")
	args := []string{"--reuid=" + uid, "--regid=" + gid, "--clear-groups", "--bounding-set=-all", bin}
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--webhook.token-file="):
			a = "--webhook.token-file=" + files["webhook.token"]
		case strings.HasPrefix(a, "--agent.token-file="):
			a = "--agent.token-file=" + files["api.token"]
		case strings.HasPrefix(a, "--api.token-file="):
			a = "--api.token-file=" + files["api.token"]
		case strings.HasPrefix(a, "--agent.targets-file="):
			// As the discovery sidecar writes it (TestAgentDiscovery).
			a = "--agent.targets-file=" + filepath.Join(dir, "agents.json")
			if err := os.WriteFile(filepath.Join(dir, "agents.json"), []byte(`[{"targets":["10.0.0.5:9436"]}]`), 0o644); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(a, "--responder.audit-file="):
			a = "--responder.audit-file=" + filepath.Join(audit, "decisions.jsonl")
		}
		args = append(args, a)
	}
	responder := ns.Cmd("setpriv", args...)
	var out testnet.SyncBuffer
	responder.Stdout, responder.Stderr = &out, &out
	if err := responder.Start(); err != nil {
		t.Fatalf("start responder: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = responder.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = responder.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = responder.Process.Kill()
			<-exited
		}
	})
	port := fmt.Sprint(c.Ports[0].ContainerPort)
	logs := func() string { return "responder:\n" + out.String() }
	testnet.WaitForProcess(t, 20*time.Second, exited, logs, "the responder to be ready", func() bool {
		return ns.Cmd("curl", "-fs", "--max-time", "1", "-o", "/dev/null", "http://127.0.0.1:"+port+"/readyz").Run() == nil
	})
	code, _ := ns.Cmd("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
		"--data", "{}", "http://127.0.0.1:"+port+"/api/v1/alerts").Output()
	if string(code) != "401" {
		t.Errorf("webhook without token: HTTP %s, want 401\n%s", code, logs())
	}
}

// TestAgentDiscovery: the responder's agents come from the targets file the
// discovery sidecar writes into a volume both containers mount, and what the
// sidecar's script writes from DNS answers (busybox nslookup's format,
// IPv4 and IPv6) is a targets file the responder reads as those agents.
func TestAgentDiscovery(t *testing.T) {
	tool(t, "sh", "dash")
	tool(t, "awk", "mawk")
	m := loadManifests(t)
	if len(m.deployments) != 1 || len(m.configMaps) != 1 {
		t.Fatalf("want one Deployment and one ConfigMap, got %d and %d", len(m.deployments), len(m.configMaps))
	}
	spec := m.deployments[0].Spec.Template.Spec
	var targetsFile string
	for _, a := range spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--agent.targets-file="); ok {
			targetsFile = v
		}
	}
	if targetsFile == "" {
		t.Fatal("the responder has no --agent.targets-file: its agents would come from nowhere")
	}
	mountOf := func(c corev1.Container) (vol, path string) {
		for _, vm := range c.VolumeMounts {
			if strings.HasPrefix(targetsFile, vm.MountPath+"/") {
				return vm.Name, vm.MountPath
			}
		}
		return "", ""
	}
	respVol, _ := mountOf(spec.Containers[0])
	if respVol == "" || len(spec.Containers) != 2 {
		t.Fatalf("the targets file %s is on no volume of the responder, or there is no discovery sidecar", targetsFile)
	}
	side := spec.Containers[1]
	sideVol, sidePath := mountOf(side)
	env := map[string]string{}
	for _, e := range side.Env {
		env[e.Name] = e.Value
	}
	if sideVol != respVol || env["TARGETS_DIR"] != sidePath || filepath.Join(sidePath, "agents.json") != targetsFile {
		t.Fatalf("the sidecar writes %s/agents.json on volume %q; the responder reads %s on volume %q", env["TARGETS_DIR"], sideVol, targetsFile, respVol)
	}
	script, ok := m.configMaps[0].Data["discover.sh"]
	if !ok {
		t.Fatal("the ConfigMap has no discover.sh")
	}

	// Run the script once with a stand-in nslookup that answers as busybox's does.
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	stub := "#!/bin/sh\nprintf 'Server:\\t\\t10.96.0.10\\nAddress:\\t10.96.0.10:53\\n\\nName:\\t%s\\nAddress: 10.0.0.5\\nName:\\t%s\\nAddress: 10.0.0.6\\n\\nName:\\t%s\\nAddress: fd00::7\\n' \"$1\" \"$1\" \"$1\"\n"
	if err := os.WriteFile(filepath.Join(bin, "nslookup"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "targets")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ONCE=1", "TARGETS_DIR=" + out,
		"AGENT_SERVICE=" + env["AGENT_SERVICE"], "AGENT_PORT=" + env["AGENT_PORT"], "INTERVAL_SECONDS=1"}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("discover.sh: %v\n%s", err, b)
	}
	data, err := os.ReadFile(filepath.Join(out, "agents.json"))
	if err != nil {
		t.Fatal(err)
	}
	agents, err := responder.ParseTargets(data)
	if err != nil {
		t.Fatalf("the responder cannot read what the sidecar writes: %v\n%s", err, data)
	}
	var keys []string
	for k := range agents {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := "10.0.0.5:9436 10.0.0.6:9436 [fd00::7]:9436"; strings.Join(keys, " ") != want {
		t.Errorf("agents %v from %s, want %s", keys, data, want)
	}
}
