/** What `lieq doctor` reports: which addon loaded, how it was built, what the machine offers. */
import { availableParallelism, cpus, totalmem } from 'node:os';

import { native, nativePath, type BuildInfo, type CpuInfo, type CudaInfo } from './native.js';

export interface DoctorReport {
  addon: { path: string; flavour: string } & BuildInfo;
  cpu: CpuInfo & { model: string; simdPath: string };
  cuda: CudaInfo;
  node: string;
  platform: string;
  totalMemory: number;
}

export function doctor(): DoctorReport {
  const n = native();
  const build = n.buildInfo();
  const cpu = n.cpuInfo();
  const cuda = n.cudaInfo();
  const flavour = `${build.buildSystem}, ${build.simd}${build.cuda ? ', CUDA' : ', CPU only'}`;
  return {
    addon: { path: nativePath(), flavour, ...build },
    cpu: {
      ...cpu,
      model: cpus()[0]?.model ?? 'unknown',
      // Which kernels run: the compiled SIMD path if this CPU supports it, else the scalar reference.
      simdPath: build.simdUsable ? build.simd : 'scalar (compiled SIMD path not supported by this CPU)',
    },
    cuda,
    node: process.version,
    platform: `${process.platform}-${process.arch} (${availableParallelism()} logical CPUs)`,
    totalMemory: totalmem(),
  };
}
