// eslint for the web page's modules (app/static/*.js): the recommended rules, in a browser, as ES modules.
// Layout is prettier's (.prettierrc.json), so no formatting rule here.
import js from '@eslint/js';
import globals from 'globals';

export default [
  js.configs.recommended,
  {
    files: ['app/static/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.browser },
    rules: {
      'no-implicit-globals': 'error',
      'no-var': 'error',
      'prefer-const': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      // State is passed explicitly: a module exports functions and constants, never a variable another
      // module could read as it changes (an exported `let` is a live binding).
      'no-restricted-syntax': [
        'error',
        {
          selector: "ExportNamedDeclaration > VariableDeclaration[kind!='const']",
          message: 'Export a function or a constant; pass state to the module that needs it.',
        },
      ],
    },
  },
  {
    files: ['eslint.config.mjs'],
    languageOptions: { sourceType: 'module', globals: globals.node },
  },
];
