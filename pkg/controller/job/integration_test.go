package job_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controller/internal/controllertest"
)

// kubelet ends each pod by its image: "fail" fails, "sleep" keeps running,
// anything else succeeds.
func kubelet(p *v1.Pod) {
	switch p.Spec.Containers[0].Image {
	case "fail":
		p.Status.Phase = v1.PodFailed
	case "sleep":
		p.Status.Phase = v1.PodRunning
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	default:
		p.Status.Phase = v1.PodSucceeded
	}
}

func newJob(name, image string, mod func(*batchv1.Job)) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: batchv1.JobSpec{Template: v1.PodTemplateSpec{Spec: v1.PodSpec{
			RestartPolicy: v1.RestartPolicyNever,
			Containers:    []v1.Container{{Name: "c", Image: image}},
		}}},
	}
	if mod != nil {
		mod(j)
	}
	return j
}

func ptr[T any](v T) *T { return &v }

// waitCondition waits for a true condition of type ct and returns the Job.
func waitCondition(t *testing.T, c kubernetes.Interface, name string, ct batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	controllertest.Eventually(t, fmt.Sprintf("%s %s", name, ct), func() (bool, string) {
		var err error
		job, err = c.BatchV1().Jobs("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range job.Status.Conditions {
			if cond.Type == ct && cond.Status == v1.ConditionTrue {
				return true, ""
			}
		}
		return false, fmt.Sprintf("status %+v", job.Status)
	})
	return job
}

func condTypes(job *batchv1.Job) string {
	var s []string
	for _, c := range job.Status.Conditions {
		s = append(s, string(c.Type)+"/"+c.Reason)
	}
	return strings.Join(s, ",")
}

// allPods lists every pod a Job created, finished or not.
func allPods(t *testing.T, c kubernetes.Interface, uid types.UID) []v1.Pod {
	t.Helper()
	list, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Pod
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == uid {
			out = append(out, p)
		}
	}
	return out
}

func TestJobIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	// The controller manager runs the job controller and the garbage
	// collector, as in a real cluster.
	c := testcluster.Start(t, testcluster.Options{Controllers: true})
	controllertest.FakeKubeletFunc(t, c.Config, 100*time.Millisecond, kubelet)
	api, ctx := c.Client, context.Background()
	create := func(j *batchv1.Job) *batchv1.Job {
		t.Helper()
		got, err := api.BatchV1().Jobs("default").Create(ctx, j, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	t.Run("completions", func(t *testing.T) {
		j := create(newJob("three", "ok", func(j *batchv1.Job) { j.Spec.Completions, j.Spec.Parallelism = ptr(int32(3)), ptr(int32(2)) }))
		j = waitCondition(t, api, "three", batchv1.JobComplete)
		if j.Status.Succeeded != 3 || j.Status.Active != 0 || j.Status.CompletionTime == nil || j.Status.StartTime == nil ||
			condTypes(j) != "SuccessCriteriaMet/CompletionsReached,Complete/CompletionsReached" {
			t.Errorf("status = %+v, want 3 succeeded, SuccessCriteriaMet then Complete", j.Status)
		}
		if n := len(allPods(t, api, j.UID)); n != 3 {
			t.Errorf("job created %d pods, want 3", n)
		}
	})

	t.Run("backoffLimit", func(t *testing.T) {
		create(newJob("failing", "fail", func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr(int32(1)) }))
		j := waitCondition(t, api, "failing", batchv1.JobFailed)
		if j.Status.Failed != 2 || condTypes(j) != "FailureTarget/BackoffLimitExceeded,Failed/BackoffLimitExceeded" {
			t.Errorf("status = %+v, want 2 failed and BackoffLimitExceeded", j.Status)
		}
		if n := len(allPods(t, api, j.UID)); n != 2 {
			t.Errorf("job created %d pods, want 2", n)
		}
	})

	t.Run("activeDeadlineSeconds", func(t *testing.T) {
		create(newJob("slow", "sleep", func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = ptr(int64(1)) }))
		j := waitCondition(t, api, "slow", batchv1.JobFailed)
		if condTypes(j) != "FailureTarget/DeadlineExceeded,Failed/DeadlineExceeded" || j.Status.Active != 0 {
			t.Errorf("status = %+v, want DeadlineExceeded and no active pods", j.Status)
		}
		if pods := controllertest.OwnedPods(t, api, "default", j.UID); len(pods) != 0 {
			t.Errorf("%d pods left running past the deadline", len(pods))
		}
	})

	t.Run("suspend", func(t *testing.T) {
		j := create(newJob("paused", "sleep", nil))
		controllertest.Eventually(t, "a running pod", func() (bool, string) {
			n := len(controllertest.OwnedPods(t, api, "default", j.UID))
			return n == 1, fmt.Sprintf("%d pods", n)
		})
		if _, err := api.BatchV1().Jobs("default").Patch(ctx, "paused", types.MergePatchType, []byte(`{"spec":{"suspend":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		j = waitCondition(t, api, "paused", batchv1.JobSuspended)
		controllertest.Eventually(t, "pods deleted", func() (bool, string) {
			n := len(controllertest.OwnedPods(t, api, "default", j.UID))
			return n == 0, fmt.Sprintf("%d pods", n)
		})
	})

	t.Run("ttlSecondsAfterFinished", func(t *testing.T) {
		create(newJob("brief", "ok", func(j *batchv1.Job) { j.Spec.TTLSecondsAfterFinished = ptr(int32(1)) }))
		controllertest.Eventually(t, "job deleted after its ttl", func() (bool, string) {
			j, err := api.BatchV1().Jobs("default").Get(ctx, "brief", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, ""
			}
			if err != nil {
				return false, err.Error()
			}
			return false, fmt.Sprintf("status %+v", j.Status)
		})
	})

	t.Run("kubectl", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("no kubectl on PATH")
		}
		run := func(args ...string) string {
			t.Helper()
			out, err := exec.Command(kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		run("create", "job", "pi", "--image=busybox", "--", "sh", "-c", "echo done")
		run("wait", "--for=condition=complete", "job/pi", "--timeout=40s")
		out := run("get", "jobs", "pi", "-o", "wide")
		t.Logf("kubectl get jobs -o wide:\n%s", out)
		for _, want := range []string{"NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR",
			"Complete", "1/1", "busybox", "batch.kubernetes.io/controller-uid="} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl get jobs -o wide lacks %q", want)
			}
		}
		j, err := api.BatchV1().Jobs("default").Get(ctx, "pi", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		run("delete", "job", "pi")
		controllertest.Eventually(t, "pods of the deleted job gone", func() (bool, string) {
			n := len(allPods(t, api, j.UID))
			return n == 0, fmt.Sprintf("%d pods", n)
		})
	})
}
