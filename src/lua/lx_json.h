/*
 * lx_json: JSON for Lua values, shared by the server's runtime (moonws.json,
 * onMessage binding, table sends and bodies) and the client module.
 *
 * Why not lua-cjson, which this replaced: Debian's 2.1.0 decodes every
 * number as a float ({"n":7} arrived as 7.0, 2^53+1 came back rounded),
 * prints integers with 14 significant digits, and cannot tell an empty
 * array from an empty object. Here:
 *  - a number without a fraction or exponent that fits in 64 bits decodes
 *    to a Lua integer (exactly); beyond that, and any number with a
 *    fraction or exponent, to a float — the rule of Lua's own tonumber;
 *  - integers encode exactly; floats in the shortest form that reads back
 *    to the same double, with ".0" when it would look like an integer, so
 *    a float stays a float through a round trip;
 *  - a table marked with lx_json_array (moonws.json.array) encodes as an
 *    array even when empty, and a decoded empty array comes back marked;
 *    other tables are arrays when their keys are exactly 1..n, objects
 *    otherwise (number keys written as strings), `{}` when empty;
 *  - null is the light userdata NULL (moonws.json.null, as cjson.null was);
 *  - strings must be UTF-8 (JSON text is sent as a text frame); nesting is
 *    limited to LIM_JSON_DEPTH both ways.
 * Decoding runs protected (a memory error is an error result, never a
 * panic); encoding walks the value without allocating in Lua and pushes the
 * result protected, so neither can escape from outside a Lua call.
 */
#ifndef MOONWS_LX_JSON_H
#define MOONWS_LX_JSON_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

/* Pushes the value decoded from s, or returns false with the error
 * message pushed. */
bool lx_json_decode(lua_State *L, const char *s, size_t len);
/* Encodes the value at idx; the JSON text takes its stack slot. NULL with
 * the error message pushed when it cannot be encoded. */
const char *lx_json_try_encode(lua_State *L, int idx, size_t *len);
/* The same inside a Lua call: raises instead. */
const char *lx_json_encode(lua_State *L, int idx, size_t *len);
/* Pushes the json table: encode, decode, null, array. */
void lx_json_open(lua_State *L);
/* Marks the table at idx as an array (it encodes as one even when empty). */
void lx_json_mark_array(lua_State *L, int idx);

#endif
