/*
 * Process control for moonws.testing (part of the moonws.core module):
 * start the server, read its "listening" lines with a timeout, signal it,
 * wait for it with a timeout.
 */
#ifndef MOONWS_LX_PROCESS_H
#define MOONWS_LX_PROCESS_H

#include <lua.h>

/* Adds spawn, readline, kill, wait, closefd and sleep to the table on top. */
void lx_process_register(lua_State *L);

#endif
