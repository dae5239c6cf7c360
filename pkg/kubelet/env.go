package kubelet

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrEnv marks a container whose environment cannot be built; the container
// waits with CreateContainerConfigError until the reference resolves.
var ErrEnv = errors.New("kubelet: cannot build container environment")

// objectSource reads the ConfigMaps and Secrets that env and volumes refer to.
type objectSource interface {
	ConfigMap(namespace, name string) (*v1.ConfigMap, error)
	Secret(namespace, name string) (*v1.Secret, error)
}

// envInput is everything a container's environment is built from.
type envInput struct {
	Pod         *v1.Pod
	Container   *v1.Container
	Services    []*v1.Service // services of the pod's namespace and "default"
	Objects     objectSource
	PodIP       string
	PodIPs      []string
	HostIP      string
	HostIPs     []string
	Allocatable v1.ResourceList // node allocatable, the default for unset limits
}

// expandVars replaces $(NAME) with lookup(NAME) as Kubernetes does: $$ is a
// literal $, and an unknown or unterminated reference is left as written.
func expandVars(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// serviceEnv gives the docker-link style variables of the services a pod in
// namespace sees: those of its own namespace when links are enabled, and the
// API server's "kubernetes" service of the default namespace always.
func serviceEnv(services []*v1.Service, namespace string, links bool) map[string]string {
	chosen := map[string]*v1.Service{}
	for _, s := range services {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == v1.ClusterIPNone {
			continue
		}
		switch {
		case s.Namespace == namespace && links:
			chosen[s.Name] = s
		case s.Namespace == "default" && s.Name == "kubernetes":
			if _, ok := chosen[s.Name]; !ok {
				chosen[s.Name] = s
			}
		}
	}
	env := map[string]string{}
	for _, s := range chosen {
		if len(s.Spec.Ports) == 0 {
			continue
		}
		prefix := envName(s.Name)
		ip := s.Spec.ClusterIP
		env[prefix+"_SERVICE_HOST"] = ip
		env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				env[prefix+"_SERVICE_PORT_"+envName(p.Name)] = strconv.Itoa(int(p.Port))
			}
		}
		first := s.Spec.Ports[0]
		env[prefix+"_PORT"] = linkURL(first, ip)
		for _, p := range s.Spec.Ports {
			proto := string(p.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			k := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			env[k] = linkURL(p, ip)
			env[k+"_PROTO"] = strings.ToLower(proto)
			env[k+"_PORT"] = strconv.Itoa(int(p.Port))
			env[k+"_ADDR"] = ip
		}
	}
	return env
}

func envName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

func linkURL(p v1.ServicePort, ip string) string {
	proto := strings.ToLower(string(p.Protocol))
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%s://%s", proto, net.JoinHostPort(ip, strconv.Itoa(int(p.Port))))
}

// envVar is one resolved variable.
type envVar struct{ Name, Value string }

// buildEnv resolves a container's environment: envFrom, then env in order
// (each may refer to the ones before it and to the service variables), then
// the service variables the container did not set itself. The result is
// sorted by name.
func buildEnv(in envInput) ([]envVar, error) {
	pod, c := in.Pod, in.Container
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	svc := serviceEnv(in.Services, pod.Namespace, links)
	env := map[string]string{}

	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			optional := from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional
			cm, err := in.Objects.ConfigMap(pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if optional && apierrors.IsNotFound(err) {
					continue
				}
				return nil, fmt.Errorf("%w: configmap %q: %w", ErrEnv, from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			optional := from.SecretRef.Optional != nil && *from.SecretRef.Optional
			s, err := in.Objects.Secret(pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if optional && apierrors.IsNotFound(err) {
					continue
				}
				return nil, fmt.Errorf("%w: secret %q: %w", ErrEnv, from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for k, v := range data {
			name := from.Prefix + k
			if len(validation.IsEnvVarName(name)) > 0 {
				continue // Kubernetes skips invalid names (and says so in an event)
			}
			env[name] = v
		}
	}

	lookup := func(name string) (string, bool) {
		if v, ok := env[name]; ok {
			return v, true
		}
		v, ok := svc[name]
		return v, ok
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = expandVars(e.Value, lookup)
			continue
		}
		v, ok, err := envValueFrom(in, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrEnv, e.Name, err)
		}
		if ok {
			env[e.Name] = v
		}
	}
	for k, v := range svc {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	out := make([]envVar, 0, len(env))
	for k, v := range env {
		out = append(out, envVar{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// envValueFrom resolves one valueFrom; ok is false when an optional source
// is missing and the variable is simply not set.
func envValueFrom(in envInput, src *v1.EnvVarSource) (string, bool, error) {
	pod := in.Pod
	switch {
	case src.FieldRef != nil:
		v, err := podField(in, src.FieldRef.FieldPath)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		v, err := resourceField(in, src.ResourceFieldRef)
		return v, err == nil, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := in.Objects.ConfigMap(pod.Namespace, ref.Name)
		if err != nil {
			if optional && apierrors.IsNotFound(err) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("configmap %q: %w", ref.Name, err)
		}
		if v, ok := cm.Data[ref.Key]; ok {
			return v, true, nil
		}
		if v, ok := cm.BinaryData[ref.Key]; ok {
			return string(v), true, nil
		}
		if optional {
			return "", false, nil
		}
		return "", false, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := in.Objects.Secret(pod.Namespace, ref.Name)
		if err != nil {
			if optional && apierrors.IsNotFound(err) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %q: %w", ref.Name, err)
		}
		if v, ok := s.Data[ref.Key]; ok {
			return string(v), true, nil
		}
		if optional {
			return "", false, nil
		}
		return "", false, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
	}
	return "", false, errors.New("unsupported valueFrom")
}

// podField resolves a downward API field path.
func podField(in envInput, path string) (string, error) {
	pod := in.Pod
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return in.HostIP, nil
	case "status.hostIPs":
		return strings.Join(in.HostIPs, ","), nil
	case "status.podIP":
		return in.PodIP, nil
	case "status.podIPs":
		return strings.Join(in.PodIPs, ","), nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// subscript parses prefix['key'].
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// formatMap renders labels or annotations as the downward API does:
// key="value" lines, sorted.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return strings.Join(lines, "\n")
}

// resourceField resolves a resourceFieldRef: the container's request or
// limit divided by the divisor, rounded up; an unset limit is the node's
// allocatable.
func resourceField(in envInput, ref *v1.ResourceFieldSelector) (string, error) {
	c := in.Container
	if ref.ContainerName != "" {
		c = nil
		for _, cc := range append(slices.Clone(in.Pod.Spec.InitContainers), in.Pod.Spec.Containers...) {
			if cc.Name == ref.ContainerName {
				c = &cc
				break
			}
		}
		if c == nil {
			return "", fmt.Errorf("container %q not found", ref.ContainerName)
		}
	}
	kind, res, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	name := v1.ResourceName(res)
	var q resource.Quantity // an unset request reads as 0
	switch kind {
	case "limits":
		var ok bool
		if q, ok = c.Resources.Limits[name]; !ok {
			q = in.Allocatable[name]
		}
	case "requests":
		q = c.Resources.Requests[name]
	default:
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == v1.ResourceCPU {
		v := math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue()))
		return strconv.FormatInt(int64(v), 10), nil
	}
	v := math.Ceil(float64(q.Value()) / float64(divisor.Value()))
	return strconv.FormatInt(int64(v), 10), nil
}

// expandCommand expands $(VAR) in command and args with the final env.
func expandCommand(args []string, env []envVar) []string {
	if len(args) == 0 {
		return nil
	}
	m := make(map[string]string, len(env))
	for _, e := range env {
		m[e.Name] = e.Value
	}
	lookup := func(n string) (string, bool) { v, ok := m[n]; return v, ok }
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expandVars(a, lookup)
	}
	return out
}
