// Lint rules that guard the two things that break Temporal projects quietly:
// non-deterministic code in workflows and promises nobody awaits.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.lab/**', '.demo/**', '.scratch/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Plain Node scripts (no type information).
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: {
      globals: {
        console: 'readonly',
        process: 'readonly',
        URL: 'readonly',
        AbortController: 'readonly',
        setTimeout: 'readonly',
      },
    },
  },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no Node built-ins,
    // and activities are imported as types only.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'Workflow code must be deterministic: no Node built-ins.',
          })),
          patterns: [
            {
              group: ['**/activities/**', '!**/activities/types*'],
              message: 'Import activities as types only (activities/types).',
            },
          ],
        },
      ],
    },
  },
  {
    // The nodeboot CLI and client library talk to the workflows through
    // common/ (definitions, input) and to the ledger through inventory/: they
    // never load workflow or activity code.
    files: ['client/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/workflows/**', '**/activities/**'],
              message: 'The client uses common/ and inventory/, not workflows/ or activities/.',
            },
          ],
        },
      ],
    },
  },
  {
    // common/ is imported by workflows, so it runs in the same sandbox.
    files: ['common/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'common/ is imported by workflows: no Node built-ins.',
          })),
        },
      ],
    },
  },
  {
    // The product never runs lab code: the lab installs its programs on its nodes and names them in its inputs.
    files: ['activities/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/lab/**', '**/lab'],
              message: 'activities/ must not import lab/: the lab is not part of the product.',
            },
          ],
        },
      ],
    },
  },
);
