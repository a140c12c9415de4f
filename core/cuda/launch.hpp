// Launching a body (core/cuda/*_bodies.hpp) as a CUDA kernel: one thread per index
// i < body.count(). Defined in kernels.cu for exactly the bodies it instantiates; a body
// missing from that list is a link error, not a silent host fallback.
#pragma once

namespace mtp::cuda {

// Enqueues the kernel on the default stream; returns the launch's cudaError_t as an int
// (0: success). Never throws: it runs inside per-step loops, whose callers check once.
template <class Body>
int launch(const Body& body);

}  // namespace mtp::cuda
