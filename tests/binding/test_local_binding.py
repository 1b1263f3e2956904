"""The one slice binding for local processes (job_runner.binding.local), used by the local executor and
the local spawner. Closes the finding of issue 9: jobs and servers disagreed on the MPS limits."""
from job_runner.binding.local import device_ids, local_env
from job_runner.scheduling import Assignment


def test_share_on_gpu_other_than_0_limits_visible_ordinal_0():
    # Under CUDA_VISIBLE_DEVICES=3 the process sees one device, ordinal 0: the MPS memory limit must name
    # ordinal 0, or MPS ignores it (the wave-1 job path wrote "3=4096M").
    env = local_env({"node": "n1", "gpu_indices": [3], "gpu_milli": 250, "gpu_mem_mib": 4096})
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=4096M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert env["AISTACK_GPU_MILLI"] == "250"
    assert env["AISTACK_NODE"] == "n1"


def test_thread_percentage_rounds_down_never_above_the_share():
    env = local_env({"node": "n", "gpu_indices": [0], "gpu_milli": 429})
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "42"
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in env
    assert local_env({"node": "n", "gpu_indices": [0], "gpu_milli": 5})["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "1"


def test_whole_gpus_get_no_mps_limits():
    env = local_env(Assignment("n", (1, 2), 2000))
    assert env["CUDA_VISIBLE_DEVICES"] == "1,2"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "1,2"
    assert not any(k.startswith("CUDA_MPS") for k in env)


def test_cpu_slice_sees_no_gpu():
    env = local_env({"node": "n", "gpu_indices": [], "gpu_milli": 0})
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_mig_instance_by_uuid_when_nvml_names_it():
    gpus = [{"uuid": "GPU-0"}, {"uuid": "GPU-1", "mig_devices": [{"start": 4, "uuid": "MIG-abc"}]}]
    a = {"node": "n", "gpu_indices": [1], "gpu_milli": 429, "mig": [1, "3g.40gb", 4]}
    assert device_ids(a, gpus=gpus) == ["MIG-abc"]
    env = local_env(a, ids=device_ids(a, gpus=gpus))
    assert env["CUDA_VISIBLE_DEVICES"] == "MIG-abc"
    assert (env["AISTACK_MIG_PROFILE"], env["AISTACK_MIG_SLOT"]) == ("3g.40gb", "4")
    assert not any(k.startswith("CUDA_MPS") for k in env)  # MIG isolates in hardware


def test_uuid_mode():
    gpus = [{"uuid": "GPU-a"}, {"uuid": "GPU-b"}]
    assert device_ids({"gpu_indices": [1]}, mode="uuid", gpus=gpus) == ["GPU-b"]
    assert device_ids({"gpu_indices": [1]}) == ["1"]


def test_mps_pipe_directory_only_for_shares():
    assert local_env({"gpu_indices": [0], "gpu_milli": 500}, mps_pipe_directory="/run/mps")["CUDA_MPS_PIPE_DIRECTORY"] == "/run/mps"
    assert "CUDA_MPS_PIPE_DIRECTORY" not in local_env({"gpu_indices": [0], "gpu_milli": 1000}, mps_pipe_directory="/run/mps")
