// How much memory this process may still take, for checks made before allocating
// (file reads, the training run's estimate) so that a run too large for the machine
// is refused with the amount instead of dying in std::bad_alloc or the OOM killer.
#pragma once

#include <cstdint>
#include <string>

namespace mtp {

// Bytes that can still be allocated without swapping: the kernel's MemAvailable, capped
// by the cgroup's memory limit less its usage (containers, Slurm jobs). UINT64_MAX when
// neither can be read (the checks then pass).
std::uint64_t available_memory_bytes();

// "512 B", "3.2 MiB", "8.9 GiB": a size for a message.
std::string format_bytes(double bytes);

}  // namespace mtp
