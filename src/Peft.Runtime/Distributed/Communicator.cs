using System;

namespace Peft.Runtime.Distributed
{
    /// <summary>Picks the communicator for how this process was started.</summary>
    public static class Communicator
    {
        private static readonly object Gate = new();
        private static OpenMpiCommunicator? _openMpi;

        /// <summary>
        /// Under OpenMPI's <c>mpirun</c> (which sets <c>OMPI_COMM_WORLD_SIZE</c>): the <see cref="OpenMpiCommunicator"/>
        /// over every rank of the job, initialised on the first call and the same object on later ones. Otherwise: the
        /// <see cref="SingleProcessCommunicator"/>, so one program runs alone or under <c>mpirun</c> unchanged.
        /// </summary>
        /// <exception cref="InvalidOperationException">Started by <c>mpirun</c> but OpenMPI's library cannot be loaded or is another MPI.</exception>
        public static ICommunicator FromEnvironment()
        {
            if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE")))
                return SingleProcessCommunicator.Instance;
            lock (Gate)
                return _openMpi is { IsDisposed: false } ? _openMpi : _openMpi = OpenMpiCommunicator.Initialize();
        }
    }
}
