/*
 * peapod-pause: the process of a pod's sandbox container.
 *
 * It holds the pod's namespaces open by simply existing: it sleeps until
 * told to stop. SIGINT and SIGTERM make it exit 0. When the pod shares one
 * pid namespace it is PID 1 there, so it also reaps every orphan that is
 * re-parented to it (SIGCHLD -> waitpid(-1, WNOHANG) until nothing is left).
 *
 * Build: musl-gcc -static -Os -s -o pause pause.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PEAPOD_PAUSE_VERSION
#define PEAPOD_PAUSE_VERSION "0.1.0"
#endif

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	int saved_errno = errno;

	(void)sig;
	for (;;) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);

		if (pid > 0)
			continue;
		if (pid < 0 && errno == EINTR)
			continue;
		break; /* 0: children left but none exited; -1/ECHILD: none left */
	}
	errno = saved_errno;
}

static int install(int sig, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	if (sig == SIGCHLD)
		sa.sa_flags |= SA_NOCLDSTOP;
	sigfillset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "-v") == 0) {
		printf("peapod-pause %s\n", PEAPOD_PAUSE_VERSION);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: %s [-v]\n", argv[0]);
		return 2;
	}

	if (install(SIGINT, on_stop) < 0 || install(SIGTERM, on_stop) < 0 ||
	    install(SIGCHLD, on_child) < 0) {
		perror("peapod-pause: sigaction");
		return 1;
	}

	/* Reap anything that exited before the handler was in place. */
	on_child(SIGCHLD);

	for (;;)
		pause();
}
