// Unit tests of the lab extension's form and panel logic (pure TypeScript, no browser needed).
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/labextension/test'],
  testMatch: ['**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/labextension/tsconfig.test.json' }]
  }
};
