/* project: the commands for a user's own project folder.
 *
 *   shardrun init DIR [--stream NAME] [--kinesis]   writes a working project
 *   shardrun test [SPEC_OR_DIR...]                  runs its busted specs
 *
 * Both return the process exit status. */
#ifndef SHARDRUN_PROJECT_H
#define SHARDRUN_PROJECT_H

/* Writes DIR/shardrun.lua (config), DIR/processor.lua (every callback,
 * commented), DIR/spec/processor_spec.lua and DIR/.gitignore, creating DIR
 * if needed; never overwrites a file (nothing is written if one exists).
 * Prints what it wrote and the commands that run the project. */
int project_init(const char *dir, const char *stream, int kinesis);

/* Runs busted under LuaJIT with shardrun's Lua modules (and ./lua, when
 * there is one) on the path; `args` go to busted as they are (spec files,
 * folders, busted's options). Does not return unless busted cannot be
 * started: the exit status is busted's. */
int project_test(int argc, char **argv);

#endif
